"""``python -P -m testio_sync.tasks``: run the sync worker (the same as ``testio-sync worker``).

Spawned workers start this way: the module path lies inside our package and
``-P`` keeps the caller's folder off ``sys.path``, so a ``tasks.py`` there never runs.
"""

import logging
import sys

from testio_sync.errors import ConfigError, TestioSyncError
from testio_sync.settings import Settings
from testio_sync.tasks.consumer import run_worker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)
try:
    run_worker(Settings.from_env())
except TestioSyncError as exc:
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
