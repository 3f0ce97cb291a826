"""``python -m falip.cli``: the ``falip`` command line."""

from falip.cli import main

raise SystemExit(main())
