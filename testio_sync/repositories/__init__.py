"""Read-through reads (store first, API on a miss or stale row) and their per-entity locks."""

from testio_sync.repositories.entity_locks import EntityLocks
from testio_sync.repositories.reads import Repositories

__all__ = ["EntityLocks", "Repositories"]
