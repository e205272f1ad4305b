"""The huey tasks, for ``huey_consumer tasks.huey`` run from a checkout.

The tasks live in ``testio_sync.tasks`` (installed with the package, so no other
project's ``tasks`` can collide with them); this folder is not installed and only
re-exports them, so the task names stay ``testio_sync.tasks.*`` either way.
"""

from testio_sync.tasks import *  # noqa: F403 - the same names, so the task names match
from testio_sync.tasks import __all__  # noqa: F401
