"""The huey tasks, for ``huey_consumer tasks.huey`` run from a checkout.

The tasks live in ``testio_sync.tasks`` (installed with the package, so no other
project's ``tasks`` can collide with them); this folder is not installed and only
re-exports them, so the task names stay ``testio_sync.tasks.*`` either way.
"""

from testio_sync.tasks import (
    background_sync,
    check_background_sync,
    configure,
    current_settings,
    enqueue_run,
    huey,
    run_sync_job,
)

__all__ = [
    "background_sync",
    "check_background_sync",
    "configure",
    "current_settings",
    "enqueue_run",
    "huey",
    "run_sync_job",
]
