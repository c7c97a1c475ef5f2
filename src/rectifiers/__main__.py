from rectifiers.cli import main

raise SystemExit(main())
