from services.data_router.main import main

main()
