from agentd.entry import main

raise SystemExit(main())
