from nexec.cli import main

raise SystemExit(main())
