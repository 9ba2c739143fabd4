from server.backfill.backfill import main

raise SystemExit(main())
