"""``python -m testio_sync.simulator``; see ``cli`` for the options."""

from testio_sync.simulator.cli import main

raise SystemExit(main())
