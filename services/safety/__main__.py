from services.safety.main import main

main()
