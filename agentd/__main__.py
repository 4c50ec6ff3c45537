from agentd.main import main

raise SystemExit(main())
