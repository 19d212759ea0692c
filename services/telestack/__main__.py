from telestack.cli import main

raise SystemExit(main())
