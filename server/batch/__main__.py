from server.batch.backfill import main

raise SystemExit(main())
