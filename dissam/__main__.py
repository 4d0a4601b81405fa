from dissam.cli import main

raise SystemExit(main())
