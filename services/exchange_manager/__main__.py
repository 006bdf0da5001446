from services.exchange_manager.main import main

main()
