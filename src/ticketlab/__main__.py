from ticketlab.cli import main

raise SystemExit(main())
