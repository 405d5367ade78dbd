from livinglab.cli import main

raise SystemExit(main())
