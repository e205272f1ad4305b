"""The CLI's text: counts, durations, the summary, throttled progress, exit-code mapping."""

from __future__ import annotations

import io

import pytest

from testio_sync.cli import support as cli_support
from testio_sync.cli.render import (
    PlainProgress,
    format_bytes,
    format_counts,
    format_duration,
    nuke_preview_lines,
    summary_lines,
)
from testio_sync.sync.types import SyncPhase, SyncProgress, SyncResult, SyncStatus


def test_counts_read_like_the_spec_example() -> None:
    """Thousands separators and the fixed entity order of the nuke warning."""
    counts = {"products": 6, "tests": 724, "bugs": 8056, "features": 298, "users": 45}
    assert format_counts(counts) == "6 products, 724 tests, 8,056 bugs, 298 features, 45 users"
    assert format_counts({"products": 1}) == "1 product, 0 tests, 0 bugs, 0 features, 0 users"


def test_sizes_and_durations_are_short_and_human() -> None:
    """Bytes scale to KB/MB; durations keep one decimal below two minutes."""
    assert format_bytes(512) == "512 bytes"
    assert format_bytes(3 * 1024 * 1024) == "3.0 MB"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(245) == "4m 05s"


def test_nuke_preview_names_scope_counts_database_and_backup() -> None:
    """The preview says what is deleted, how big the file is and where the backup goes."""
    lines = nuke_preview_lines(
        {
            "counts": {"products": 1, "tests": 22, "bugs": 1500, "features": 8, "users": 9},
            "product_ids": [598],
            "database": "/data/cache.db",
            "database_bytes": 2048,
            "backup_path": "/data/backups/cache-before-nuke-x.db",
        }
    )
    assert (
        lines[1]
        == "Current data of products 598: 1 product, 22 tests, 1,500 bugs, 8 features, 9 users"
    )
    assert lines[2] == "Database: /data/cache.db (2.0 KB)"
    assert lines[3] == "Backup first to: /data/backups/cache-before-nuke-x.db"


@pytest.mark.parametrize(
    ("status", "last_line"),
    [
        (SyncStatus.SUCCEEDED, "Sync completed in 12.3s"),
        (SyncStatus.PARTIAL, "Sync finished with errors in 12.3s"),
        (SyncStatus.FAILED, "Sync failed after 12.3s"),
    ],
)
def test_summary_lists_warnings_errors_and_ends_with_the_outcome(
    status: SyncStatus, last_line: str
) -> None:
    """Every summary lists what changed, the warnings and errors, then one outcome line."""
    result = SyncResult(
        run_id="abc",
        status=status,
        phases_completed=[SyncPhase.PRODUCTS],
        products_synced=6,
        tests_discovered=1234,
        warnings=["w1"],
        errors=["e1", "e2"],
        duration_seconds=12.34,
    )
    lines = summary_lines(result)
    assert "Tests: 1,234 new, 0 updated, 0 removed" in lines
    assert lines[lines.index("Warnings (1):") + 1] == "  - w1"
    assert lines[lines.index("Errors (2):") + 2] == "  - e2"
    assert lines[-1] == last_line


def test_plain_progress_prints_changes_at_most_every_interval() -> None:
    """Piped stderr gets one line per change, throttled; the finished state prints nothing."""
    stream, now = io.StringIO(), [0.0]
    progress = PlainProgress(stream, interval_s=3.0, clock=lambda: now[0])
    progress(SyncProgress(phase="products"))
    now[0] = 1.0
    progress(SyncProgress(phase="new_tests", products_total=3, pages=1))  # too soon
    now[0] = 3.5
    progress(SyncProgress(phase="new_tests", products_done=1, products_total=3, pages=2))
    progress(SyncProgress(phase=None, message="finished"))
    assert stream.getvalue().splitlines() == [
        "sync: Products: reading the product list",
        "sync: Tests: 1/3 products, 2 pages, 0 new",
    ]


@pytest.mark.parametrize(
    ("status", "errors", "phases", "code"),
    [
        (SyncStatus.SUCCEEDED, [], [SyncPhase.PRODUCTS], 0),
        (SyncStatus.PARTIAL, ["Product 9 is not visible"], [SyncPhase.PRODUCTS], 3),
        (SyncStatus.FAILED, ["The API refused the token (HTTP 401)"], [], 1),
        (SyncStatus.ABANDONED, ["The process running this sync died"], [], 1),
        (SyncStatus.FAILED, ["Timed out after 1 s waiting for the sync lock at /x"], [], 4),
        (SyncStatus.FAILED, ["Another sync holds the lock: PID 7 (run r)"], [], 4),
    ],
)
def test_exit_codes_follow_the_run_status(
    status: SyncStatus, errors: list[str], phases: list[SyncPhase], code: int
) -> None:
    """0 ok, 1 failed or abandoned, 3 partial, 4 when only the lock wait failed the run."""
    result = SyncResult(run_id="r", status=status, errors=errors, phases_completed=phases)
    assert cli_support.exit_code_for(result) == code


def test_every_time_in_human_text_reads_the_same_way() -> None:
    """Status text shows ``2026-11-27 14:45 UTC`` whatever ISO form the data holds.

    The lock record stores microseconds, the service answers whole seconds with ``Z``:
    neither form reaches the text.
    """
    from datetime import UTC, datetime

    from testio_sync.cli.render import status_lines

    status = {
        "database": "/tmp/cache.db",
        "database_bytes": 2048,
        "counts": {"products": 1},
        "last_sync_completed": datetime(2026, 11, 27, 14, 45, 25, tzinfo=UTC),
        "last_sync_age_seconds": 5.0,
        "worker_alive": False,
        "lock_holder": {"pid": 7, "run_id": "abc", "started_at": "2026-11-27T14:45:25.123456Z"},
        "active_runs": [],
        "broken_tests": [
            {
                "product_id": 1,
                "position": 3,
                "between_test_ids": [10, 11],
                "first_seen_at": "2026-11-27T14:45:25Z",
            }
        ],
        "products": [],
        "recent_runs": [
            {
                "run_id": "abc",
                "trigger": "cli",
                "status": "running",
                "enqueued_at": "2026-11-27T14:45:25Z",
                "duration_seconds": None,
            }
        ],
    }
    text = "\n".join(status_lines(status, now=datetime(2026, 11, 27, 15, 0, tzinfo=UTC)))
    assert "Last successful sync: 2026-11-27 14:45 UTC (5 s ago)" in text
    assert "Sync lock: held by PID 7 for run abc since 2026-11-27 14:45 UTC" in text
    assert "(seen 2026-11-27 14:45 UTC)" in text
    assert "abc  cli       running   2026-11-27 14:45 UTC" in text
    assert "T14:45" not in text
