"""Text the CLI shows: the sync summary, live progress, status and nuke previews.

Pure formatting over ``SyncResult``, ``SyncProgress`` and the dicts the service
returns, so every line can be checked without running a sync. Progress goes to
stderr: a rich bar on a terminal, otherwise a plain line every few seconds, so
logs of scripted runs stay short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from testio_sync.dates import human_time, to_iso
from testio_sync.sync.types import SyncProgress, SyncResult, SyncStatus

if TYPE_CHECKING:
    from testio_sync.service import RunView

PLAIN_PROGRESS_INTERVAL_S = 3.0
ENTITY_ORDER = ("products", "tests", "bugs", "features", "users")
_SINGULAR = {
    "products": "product",
    "tests": "test",
    "bugs": "bug",
    "features": "feature",
    "users": "user",
    "pages": "page",
}
_PHASE_LABELS = {
    "products": "Products",
    "features": "Features",
    "new_tests": "Tests",
    "bugs": "Bugs",
}


# -- small formatters -------------------------------------------------------------


def plural(count: int, noun: str) -> str:
    """``1 product``, ``8,056 bugs``: counts with thousands separators."""
    word = _SINGULAR.get(noun, noun) if count == 1 else noun
    return f"{count:,} {word}"


def format_counts(counts: Mapping[str, int]) -> str:
    """``6 products, 724 tests, 8,056 bugs, 298 features, 45 users``."""
    return ", ".join(plural(int(counts.get(name, 0)), name) for name in ENTITY_ORDER)


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def format_duration(seconds: float) -> str:
    """``12.3s`` below two minutes, ``4m 05s`` above."""
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def format_time(value: datetime | str | None) -> str:
    """A UTC timestamp as ``2026-01-31 13:05 UTC`` (``never`` for None)."""
    return human_time(value)


def age_of(value: datetime | None, now: datetime) -> str:
    return "never" if value is None else format_age((now - value).total_seconds())


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for the datetimes and paths in service answers."""
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=json_default)


# -- sync summary -----------------------------------------------------------------


def outcome_line(result: SyncResult) -> str:
    took = format_duration(result.duration_seconds)
    if result.status == SyncStatus.SUCCEEDED:
        return f"Sync completed in {took}"
    if result.status == SyncStatus.PARTIAL:
        return f"Sync finished with errors in {took}"
    if result.status == SyncStatus.ABANDONED:
        return f"Sync abandoned after {took} (the process running it died)"
    if result.status == SyncStatus.FAILED:
        return f"Sync failed after {took}"
    return f"Sync is still {result.status.value} after {took}"


def _bullets(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return [f"{title} ({len(items)}):", *(f"  - {item}" for item in items)]


def _changed_nothing(result: SyncResult) -> bool:
    counters = (
        result.products_synced,
        result.features_refreshed,
        result.tests_discovered,
        result.tests_updated,
        result.tests_removed,
        result.bugs_refreshed,
    )
    return not any(counters)


def summary_lines(result: SyncResult, *, verbose: bool = False) -> list[str]:
    """The end-of-sync report: what changed, what went wrong, how long it took.

    A run that did not succeed and changed nothing shows no block of zeros: its
    errors say what failed.
    """
    done = ", ".join(p.value for p in result.phases_completed)
    head = f"Run {result.run_id}" + (f" ({done} completed)" if done else "")
    if result.status != SyncStatus.SUCCEEDED and _changed_nothing(result):
        return [
            head,
            *_bullets("Warnings", result.warnings),
            *_bullets("Errors", result.errors),
            outcome_line(result),
        ]
    lines = [
        head,
        f"Products synced: {result.products_synced:,}",
        f"Features refreshed: {result.features_refreshed:,}",
        f"Tests: {result.tests_discovered:,} new, {result.tests_updated:,} updated, "
        f"{result.tests_removed:,} removed",
        f"Bugs refreshed: {result.bugs_refreshed:,}",
    ]
    if result.backup_path:
        lines.append(f"Backup of the previous data: {result.backup_path}")
    if verbose and result.per_product:
        lines.append("Per product:")
        for pid, stats in sorted(result.per_product.items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"  {pid}: {stats.get('tests_new', 0):,} new, "
                f"{stats.get('tests_updated', 0):,} updated, "
                f"{plural(stats.get('pages', 0), 'pages')}"
            )
    lines += _bullets("Warnings", result.warnings)
    lines += _bullets("Errors", result.errors)
    lines.append(outcome_line(result))
    return lines


def quiet_lines(result: SyncResult) -> list[str]:
    """``--quiet``: the errors and the outcome only."""
    return [*_bullets("Errors", result.errors), outcome_line(result)]


# -- live progress ----------------------------------------------------------------


def progress_text(progress: SyncProgress) -> str:
    """One line for a progress snapshot, e.g. ``Tests: 2/3 products, 5 pages, 40 new``."""
    phase = progress.phase or ""
    label = _PHASE_LABELS.get(phase, phase or "Waiting")
    if phase == "products":
        return f"{label}: reading the product list"
    if phase == "features":
        return f"{label}: {progress.products_done}/{progress.products_total} products"
    if phase == "new_tests":
        return (
            f"{label}: {progress.products_done}/{progress.products_total} products, "
            f"{plural(progress.pages, 'pages')}, {progress.tests_found:,} new"
        )
    if phase == "bugs":
        return (
            f"{label}: {progress.products_done}/{progress.products_total} groups, "
            f"{progress.bugs_refreshed:,} refreshed"
        )
    return f"{label}: {progress.message}" if progress.message else "Waiting for the run to start"


class ProgressReporter(Protocol):
    def __call__(self, progress: SyncProgress) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """``--quiet``: progress goes nowhere."""

    def __call__(self, progress: SyncProgress) -> None:
        return None

    def close(self) -> None:
        return None


class PlainProgress:
    """Plain lines for logs and pipes: only changes, at most every few seconds."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval_s: float = PLAIN_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self._last_text: str | None = None
        self._last_at: float | None = None

    def __call__(self, progress: SyncProgress) -> None:
        if progress.phase is None:
            return  # queued, or finished: the summary follows
        text = progress_text(progress)
        now = self.clock()
        if text == self._last_text:
            return
        if self._last_at is not None and now - self._last_at < self.interval_s:
            return
        self._last_text, self._last_at = text, now
        print(f"sync: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        return None


class RichProgress:
    """A transient rich bar on a terminal: phase, products (or bug groups) and counters."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def __call__(self, progress: SyncProgress) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("Waiting", total=None, detail="")
        label = _PHASE_LABELS.get(progress.phase or "", "Waiting")
        if progress.phase is None and progress.message == "finished":
            label = "Finished"
        detail = ""
        if progress.phase == "new_tests":
            detail = f"{plural(progress.pages, 'pages')}, {progress.tests_found:,} new tests"
        elif progress.phase == "bugs":
            detail = f"{progress.bugs_refreshed:,} bugs"
        total = progress.products_total or None
        self._progress.update(
            self._task,
            description=label,
            total=total,
            completed=progress.products_done if total else 0,
            detail=detail,
        )

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None


def make_progress(stream: TextIO, *, quiet: bool) -> ProgressReporter:
    """The reporter that fits ``stream``: nothing, a rich bar, or plain lines."""
    if quiet:
        return NullProgress()
    console = Console(file=stream)
    if console.is_terminal:
        return RichProgress(console)
    return PlainProgress(stream)


# -- status -----------------------------------------------------------------------


def _run_progress(run: Mapping[str, Any]) -> str:
    progress = SyncProgress.from_dict(run.get("progress"))
    if run.get("status") == SyncStatus.QUEUED.value:
        return "waiting for the worker"
    return progress_text(progress)


def _worker_lines(workers: list[Mapping[str, Any]]) -> list[str]:
    """One line per worker, with its host, on a shared queue (where workers beat)."""
    if not any(w.get("beat_age_seconds") is not None for w in workers):
        return []
    return [
        f"  PID {w['pid']} on {w['host']}, "
        + (
            f"last beat {format_age(w['beat_age_seconds'])}"
            if w.get("beat_age_seconds") is not None
            else "not beating yet"
        )
        for w in workers
    ]


def status_lines(status: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """``testio-sync status`` as text; ``status`` is ``SyncService.status()``."""
    now = now or datetime.now(UTC)
    lines = [
        f"Database: {status['database']} ({format_bytes(status['database_bytes'])})",
        f"Data: {format_counts(status['counts'])}",
        *([f"Queue: {status['queue']}"] if "://" in status.get("queue", "") else []),
        f"Last successful sync: {format_time(status['last_sync_completed'])}"
        + (
            f" ({format_age(status['last_sync_age_seconds'])})"
            if status["last_sync_completed"]
            else ""
        ),
    ]
    if status["worker_alive"]:
        pids = status.get("worker_pids") or [status.get("worker_pid")]
        listed = ", ".join(str(pid) for pid in pids if pid)
        label = "PIDs" if len(pids) > 1 else "PID"
        lines.append("Worker: running" + (f" ({label} {listed})" if listed else ""))
        lines.extend(_worker_lines(status.get("workers") or []))
    else:
        lines.append("Worker: not running (start one with `testio-sync worker`)")
    holder = status.get("lock_holder")
    if holder:
        lines.append(
            f"Sync lock: held by PID {holder.get('pid', '?')}"
            + (f" on {holder['host']}" if holder.get("host") else "")
            + f" for run {holder.get('run_id', '?')}"
            f" since {format_time(holder.get('started_at')) if holder.get('started_at') else '?'}"
        )
        if holder.get("silence"):
            lines.append(f"  {holder['silence']}")
    else:
        lines.append("Sync lock: free")
    active = status.get("active_runs") or []
    if active:
        lines.append("Active runs:")
        for run in active:
            lines.append(f"  {run['run_id']}  {run['status']:<8} {_run_progress(run)}")
    else:
        lines.append("Active runs: none")
    broken = status.get("broken_tests") or []
    if broken:
        lines.append(f"Broken tests ({len(broken)}, retried by the next sync):")
        for item in broken:
            prev_id, next_id = item["between_test_ids"]
            lines.append(
                f"  product {item['product_id']}, position {item['position']}, between tests "
                f"{prev_id} and {next_id} (seen {format_time(item['first_seen_at'])})"
            )
    products = status.get("products") or []
    if products:
        lines.append("Products:")
        width = max(len(str(p["name"])) for p in products)
        for product in products:
            lines.append(
                f"  {product['id']:>8}  {product['name']:<{width}}  "
                f"{plural(product['test_count'], 'tests'):>11}  "
                f"tests synced {age_of(product['tests_synced_at'], now)}"
            )
    runs = status.get("recent_runs") or []
    if runs:
        lines.append("Recent runs:")
        for run in runs:
            took = run.get("duration_seconds")
            line = (
                f"  {run['run_id']}  {run['trigger']:<9} {run['status']:<9} "
                f"{format_time(run['enqueued_at'])}  "
                f"{format_duration(took) if took is not None else '-':>8}"
            )
            if run.get("error"):
                line += f"  {run['error']}"
            lines.append(line)
    return lines


def run_lines(view: RunView) -> list[str]:
    """``testio-sync status RUN_ID``: an unfinished run's progress, a finished one's summary."""
    if view.result is not None:
        return summary_lines(view.result)
    phases = ", ".join(p.value for p in view.request.phases)
    run = {"status": view.status.value, "progress": view.progress.to_dict()}
    return [
        f"Run {view.run_id}: {view.status.value} (phases: {phases}; "
        f"started by {view.request.trigger.value})",
        f"  {_run_progress(run)}",
    ]


# -- nuke and restore -------------------------------------------------------------


def nuke_preview_lines(preview: Mapping[str, Any]) -> list[str]:
    """What ``--nuke`` destroys, and where the backup goes (``SyncService.nuke_preview``)."""
    ids = preview.get("product_ids")
    scope = f" of products {', '.join(map(str, ids))}" if ids else ""
    return [
        f"--nuke deletes the local data{scope} and syncs it again from the API.",
        f"Current data{scope}: {format_counts(preview['counts'])}",
        f"Database: {preview['database']} ({format_bytes(preview['database_bytes'])})",
        f"Backup first to: {preview['backup_path']}",
    ]


def index_check_line(check: Mapping[str, Any]) -> str:
    """``status --check``: whether the search index matches the data, and how not."""
    if check["ok"]:
        return f"Search index: ok ({check['documents']:,} documents match the data)."
    problems = [f"{check[k]:,} {k}" for k in ("missing", "stale", "changed") if check[k]]
    if not check["fts_ok"]:
        problems.append("word index differs from its documents")
    return (
        f"Search index: DIFFERS from the data ({', '.join(problems)}); "
        "`testio-sync status --check --repair` rebuilds it."
    )
