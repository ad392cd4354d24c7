from voiced.cli.main import main

raise SystemExit(main())
