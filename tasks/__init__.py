"""huey tasks of testio-sync: ``huey_consumer tasks.huey -w 1 -k thread -d 0.05 -m 0.1 -f``.

The instance lives in ``tasks.queue``; importing this package registers every
task with it, so the consumer and the enqueuing processes agree on names.
"""

from tasks.queue import configure, current_settings, huey
from tasks.sync import background_sync, check_background_sync, enqueue_run, run_sync_job

__all__ = [
    "background_sync",
    "check_background_sync",
    "configure",
    "current_settings",
    "enqueue_run",
    "huey",
    "run_sync_job",
]
