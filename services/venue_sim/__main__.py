from services.venue_sim.main import main

main()
