"""Putting a backup back, and setting a damaged database aside, under the sync lock.

The lock is the store's own (``pg_lock.sync_lock``): the file lock for a SQLite
mirror, the advisory lock for a PostgreSQL one, so a restore waits for a sync
running on any worker of the mirror, on any host, and no sync starts during it.

Neither opens the live database before checking it with plain SQLite: a
damaged file is renamed aside (kept, never deleted) and a fresh one takes its
place, so a backup can always be restored. A healthy file is itself backed up
before its data is replaced, so a restore can be undone. A PostgreSQL mirror is
backed up into a SQLite file and restored from one (``store.copy``); its damage
is PostgreSQL's to detect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testio_sync.dates import utc_now
from testio_sync.errors import StoreError
from testio_sync.settings import Settings
from testio_sync.store import queries
from testio_sync.store.backups import (
    BackupInfo,
    damage_of,
    describe,
    list_backups,
    new_backup_path,
    set_aside,
)
from testio_sync.store.copy import backup_store, restore_into_postgres
from testio_sync.store.db import (
    backup_database,
    close_database,
    open_database,
    open_store,
    restore_entities,
)
from testio_sync.sync.lock import SyncLock
from testio_sync.sync.pg_lock import sync_lock


@dataclass
class RestoreReport:
    """What a restore did: the backup it used and what it held, and where the old data went."""

    backup: BackupInfo
    counts: dict[str, int] = field(default_factory=dict)  # the mirror afterwards
    previous_backup: Path | None = None  # the data from before, backed up first
    damaged_kept: Path | None = None  # the damaged file, set aside

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup.to_dict(),
            "counts": self.counts,
            "previous_backup": str(self.previous_backup) if self.previous_backup else None,
            "damaged_kept": str(self.damaged_kept) if self.damaged_kept else None,
        }


def pick_backup(settings: Settings, backup: Path | None) -> BackupInfo:
    """``backup``, or the newest one, with what it holds.

    Raises:
        StoreError: there is no such backup, or it cannot be read.
    """
    if backup is None:
        found = list_backups(settings.backups_dir)
        if not found:
            raise StoreError(f"restore: no backup found in {settings.backups_dir}.")
        backup = found[-1]
    if not backup.is_file():
        raise StoreError(f"restore: no backup at {backup}.")
    info = describe(backup)
    if info.problem:
        raise StoreError(f"restore: the backup {backup} is {info.problem}.")
    return info


def _lock(settings: Settings, what: str) -> SyncLock:
    settings.ensure_home()
    return sync_lock(settings, run_id=f"{what}-{datetime.now(UTC):%H%M%S}")


def _set_aside_if_damaged(settings: Settings) -> Path | None:
    if damage_of(settings.db_path) is None:
        return None
    close_database(settings.db_path)
    return set_aside(settings.db_path, utc_now())


def _holds_data(path: Path) -> bool:
    return path.exists() and any((describe(path).counts or {}).values())


def set_aside_damaged(settings: Settings) -> Path | None:
    """Rename a damaged database aside (under the lock); returns its new name, or None.

    Raises:
        SyncLockedError: a sync holds the lock for longer than the lock wait.
    """
    with _lock(settings, "set-aside"):
        return _set_aside_if_damaged(settings)


def restore_backup(settings: Settings, backup: Path | None = None) -> RestoreReport:
    """Replace the mirrored data with a backup's; the data from before is kept first.

    Raises:
        StoreError: there is no backup, or it is unusable.
        SyncLockedError: a sync holds the lock for longer than the lock wait.
    """
    report = RestoreReport(backup=pick_backup(settings, backup))
    with _lock(settings, "restore"):
        if settings.database_url is not None:
            _restore_into_postgres(settings, report)
            report.counts = queries.entity_counts()
            return report
        report.damaged_kept = _set_aside_if_damaged(settings)
        if report.damaged_kept is None and _holds_data(settings.db_path):
            dest = new_backup_path(settings.backups_dir, "before-restore", utc_now())
            report.previous_backup = backup_database(settings.db_path, dest)
        open_database(settings.db_path)
        restore_entities(report.backup.path, settings.db_path)
    report.counts = queries.entity_counts()
    return report


def _restore_into_postgres(settings: Settings, report: RestoreReport) -> None:
    """The PostgreSQL mirror's data is backed up to a file, then replaced by the backup's."""
    open_store(settings)
    if any(queries.entity_counts().values()):
        dest = new_backup_path(settings.backups_dir, "before-restore", utc_now())
        report.previous_backup = backup_store(settings, dest)
    restore_into_postgres(report.backup.path, settings)
