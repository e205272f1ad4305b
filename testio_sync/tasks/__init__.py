"""huey tasks of testio-sync: ``huey_consumer testio_sync.tasks.huey -w 1 -k thread -f``.

The instance lives in ``testio_sync.tasks.queue``; importing this package
registers every task with it, so the consumer and the enqueuing processes agree
on names. It lives inside the package so no other project's ``tasks`` (nor a
``tasks.py`` in the current folder) can take its place; the repository's
top-level ``tasks/`` is a checkout-only alias for ``huey_consumer tasks.huey``.
"""

from testio_sync.tasks.queue import configure, current_settings, huey
from testio_sync.tasks.sync import background_sync, check_background_sync, enqueue_run, run_sync_job

__all__ = [
    "background_sync",
    "check_background_sync",
    "configure",
    "current_settings",
    "enqueue_run",
    "huey",
    "run_sync_job",
]
