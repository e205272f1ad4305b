"""Backup files: their names, what each holds, pruning, and a damaged database set aside.

Everything here reads files with plain ``sqlite3`` (read-only for backups) and
never binds the models, so it works when the live database is damaged: that
is exactly when a backup is needed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

COUNTED_TABLES = ("products", "tests", "bugs", "features", "users")
SIDECARS = ("-wal", "-shm")


def new_backup_path(backups_dir: Path, reason: str, when: datetime) -> Path:
    """``cache-<reason>-<UTC stamp>.db`` in ``backups_dir``, never an existing file's name."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    path = backups_dir / f"cache-{reason}-{stamp}.db"
    n = 1
    while path.exists():  # two backups in one second: keep both
        n += 1
        path = backups_dir / f"cache-{reason}-{stamp}-{n}.db"
    return path


def list_backups(backups_dir: Path) -> list[Path]:
    """The backups, oldest first."""
    if not backups_dir.is_dir():
        return []
    return sorted(backups_dir.glob("*.db"), key=lambda p: (p.stat().st_mtime, p.name))


@dataclass(frozen=True)
class BackupInfo:
    """One backup file and what it holds (``counts`` is None when it cannot be read)."""

    path: Path
    size_bytes: int
    counts: dict[str, int] | None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "counts": self.counts,
            "problem": self.problem,
        }


def describe(path: Path) -> BackupInfo:
    """Row counts of the main entities in the file at ``path``, read-only."""
    size = path.stat().st_size
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
        try:
            counts = {
                table: int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
                for table in COUNTED_TABLES
            }
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return BackupInfo(path, size, None, f"unreadable: {exc}")
    return BackupInfo(path, size, counts)


def prune(backups_dir: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest backups; returns the deleted paths."""
    backups = list_backups(backups_dir)
    doomed = backups[: max(0, len(backups) - keep)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def damage_of(path: Path) -> str | None:
    """Why the database at ``path`` is unusable (SQLite's words), or None if it is fine or absent.

    ``quick_check`` reads every page but skips the index cross-checks: a few
    hundred milliseconds on a large mirror, and only restore and nuke ask.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(path, timeout=15)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if verdict == "ok" else str(verdict)


def set_aside(path: Path, when: datetime) -> Path:
    """Rename the database at ``path`` (and its WAL files) to a ``-damaged-`` name next to it."""
    target = new_backup_path(path.parent, "damaged", when)
    path.rename(target)
    for suffix in SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).rename(target.with_name(target.name + suffix))
    return target
