from services.engine.main import main

main()
