"""What the MCP tools do, as plain functions over the store and the SyncService.

``mcp_server`` only registers these behind tool signatures; everything here
returns JSON-ready dicts and is tested without MCP. Read answers come from the
local mirror (SQLite WAL readers never wait on a running sync and never take the
sync's file lock), after ``read_through`` refreshed what they show. Every answer
carries ``data_as_of``.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from peewee import Case, fn

from testio_sync.dates import parse_iso, parse_since, to_iso
from testio_sync.errors import UsageError
from testio_sync.insights.filters import TEST_STATUSES
from testio_sync.insights.report import require_products
from testio_sync.service import RunView
from testio_sync.store import queries
from testio_sync.store.models import Bug, ExploratoryTest
from testio_sync.store.queries import (
    STATUS_BUCKETS,
    bucket_condition,
    id_in,
    status_bucket,
    store_call,
)
from testio_sync.sync.types import (
    SyncOptions,
    SyncPhase,
    SyncProgress,
    SyncScope,
    sync_phases,
)

MAX_LISTED = 10  # warnings or errors shown in one answer; the rest are counted
BUG_SEVERITIES = ("low", "high", "critical", "visual", "content", "custom")


# -- sync ------------------------------------------------------------------------------


def sync_request_parts(
    product_ids: Sequence[int] | None, since: str | None, force: bool, with_bugs: bool = False
) -> tuple[tuple[SyncPhase, ...], SyncScope, SyncOptions]:
    """The phases, scope and options of a ``sync_data`` call; ``since`` as the CLI parses it.

    Raises:
        UsageError: bad product ids or an unparseable / future ``since``.
    """
    if product_ids is not None and not product_ids:
        raise UsageError("product_ids: give at least one id, or leave it out for all products")
    since_date = parse_since(since) if since is not None and since.strip() else None
    scope = SyncScope(
        product_ids=tuple(product_ids) if product_ids is not None else None,
        since_date=since_date,
    )
    return sync_phases(with_bugs=with_bugs), scope, SyncOptions(force_refresh=force)


def _capped(items: Sequence[str], what: str) -> list[str]:
    shown = list(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        shown.append(f"... {len(items) - MAX_LISTED} more {what}: get_sync_status lists the run")
    return shown


def progress_dict(progress: SyncProgress) -> dict[str, Any]:
    return {
        "phase": progress.phase,
        "products_done": progress.products_done,
        "products_total": progress.products_total,
        "tests_found": progress.tests_found,
    }


def run_answer(view: RunView, *, attached: bool | None = None) -> dict[str, Any]:
    """A run as ``sync_data`` and ``get_sync_status(run_id)`` show it.

    Unfinished runs answer their one status word (``queued`` or ``running``) with
    the progress so far and how to follow up; finished ones carry the completed
    phases, the counts (bugs included), warnings and errors, like the CLI's
    ``--json`` (a run with errors is ``partial`` or ``failed``, never a success).
    """
    out: dict[str, Any] = {"run_id": view.run_id}
    if attached is not None:
        out["attached"] = attached
    result = view.result
    if result is None:
        out["status"] = view.status.value
        out["progress"] = progress_dict(view.progress)
        out["next_step"] = f"Call get_sync_status with run_id={view.run_id!r} to follow it."
        return out
    out.update(
        status=result.status.value,
        phases_completed=[p.value for p in result.phases_completed],
        **result.counts(),
        duration_seconds=round(result.duration_seconds, 2),
        warnings=_capped(result.warnings, "warnings"),
        errors=_capped(result.errors, "errors"),
    )
    if result.status.value in ("failed", "abandoned"):
        out["next_step"] = "Fix the cause in errors, then call sync_data again."
    elif result.errors:
        out["next_step"] = "Some data was not synced; call sync_data again to retry it."
    return out


class ProgressRelay:
    """Turns a run's progress into monotonic MCP progress (0-100) with a readable message.

    Each phase gets an equal share; within a phase, products done of total; 100 only
    once the run has finished. Only increases are sent, as the protocol requires.
    """

    TOTAL = 100.0

    def __init__(
        self,
        send: Callable[[float, float, str], Awaitable[None]],
        phases: Sequence[SyncPhase | str],
    ) -> None:
        self.send = send
        self.phases = [SyncPhase(p).value for p in phases] or [p.value for p in SyncPhase]
        self.last = -1.0

    def value_of(self, progress: SyncProgress) -> float:
        if progress.phase is None:
            return self.TOTAL if progress.message == "finished" else 0.0
        if progress.phase not in self.phases:
            return max(self.last, 0.0)
        index = self.phases.index(progress.phase)
        within = (
            min(progress.products_done / progress.products_total, 1.0)
            if progress.products_total
            else 0.0
        )
        # Short of the total until the run has finished: only "finished" may send 100, and
        # a last phase seen complete first would otherwise leave nothing above it to send.
        return min(round(self.TOTAL * (index + within) / len(self.phases), 1), self.TOTAL - 0.1)

    @staticmethod
    def message_of(progress: SyncProgress) -> str:
        if progress.phase is None:
            return "finished" if progress.message == "finished" else "queued"
        return (
            f"{progress.phase}: {progress.products_done}/{progress.products_total} products, "
            f"{progress.tests_found} tests found"
        )

    async def __call__(self, progress: SyncProgress) -> None:
        value = self.value_of(progress)
        if value > self.last:
            self.last = value
            await self.send(value, self.TOTAL, self.message_of(progress))


def jsonable(value: Any) -> Any:
    """Datetimes as ISO text, recursively (the service's status holds a few)."""
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# The holder as a model needs it: who, since when, and its silence when it went quiet.
LOCK_HOLDER_KEYS = (
    "pid",
    "host",
    "run_id",
    "started_at",
    "heartbeat_at",
    "silent_seconds",
    "silence",
)


def status_answer(status: dict[str, Any]) -> dict[str, Any]:
    """``SyncService.status()`` trimmed for a model: freshness, runs, worker, broken tests."""
    keep = (
        "last_sync_completed",
        "last_sync_age_seconds",
        "worker_alive",
        "worker_pid",
        "active_runs",
        "products",
        "counts",
        "broken_tests",
        "recent_runs",
        "lock_holder",
    )
    out = {key: jsonable(status.get(key)) for key in keep}
    out["workers"] = [
        {key: worker.get(key) for key in ("host", "pid", "beat_age_seconds")}
        for worker in status.get("workers") or []
    ]
    if holder := status.get("lock_holder"):
        out["lock_holder"] = {
            key: holder[key] for key in LOCK_HOLDER_KEYS if holder.get(key) is not None
        }
    out["active_runs"] = [
        {
            "run_id": run["run_id"],
            "status": run["status"],
            "trigger": run["request"]["trigger"],
            "progress": {k: run["progress"].get(k) for k in progress_dict(SyncProgress())},
        }
        for run in status.get("active_runs", [])
    ]
    out["data_as_of"] = to_iso(queries.oldest_sync_time())
    return out


# -- reads -----------------------------------------------------------------------------


def page_info(total: int, offset: int, count: int, what: str) -> dict[str, Any]:
    """Paging fields; when more rows exist, the offset and a sentence saying how to get them."""
    out: dict[str, Any] = {"total": total, "offset": offset, "count": count}
    if offset + count < total:
        out["next_offset"] = offset + count
        out["hint"] = f"More {what}: call again with offset={offset + count}."
    return out


def list_products_answer() -> dict[str, Any]:
    rows = queries.product_freshness()
    return {
        "products": [
            {
                "id": r["id"],
                "name": r["name"],
                "test_count": r["test_count"],
                "tests_synced_at": to_iso(r["tests_synced_at"]),
            }
            for r in rows
        ],
        "data_as_of": to_iso(queries.oldest_sync_time()),
        **({} if rows else {"hint": "The mirror is empty: call sync_data first."}),
    }


def _test_row(test: ExploratoryTest) -> dict[str, Any]:
    return {
        "id": test.id,
        "product_id": test.product_id,
        "title": test.title,
        "status": test.status,
        "testing_type": test.testing_type,
        "start_at": to_iso(test.start_at),
        "end_at": to_iso(test.end_at),
    }


def _check_values(values: Sequence[str] | None, allowed: Sequence[str], name: str) -> None:
    """Refuse unknown values of an enumerated argument, naming the valid ones."""
    if values is None:
        return
    unknown = sorted(set(values) - set(allowed))
    if unknown or not values:
        raise UsageError(
            f"unknown {', '.join(unknown) or '(empty list)'}; use {', '.join(allowed)}",
            param=name,
        )


def list_tests_answer(
    product_ids: Sequence[int],
    statuses: Sequence[str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of a product's tests, newest end first.

    Raises:
        UsageError: no or unknown products, or an unknown status.
    """
    if not product_ids:
        raise UsageError("give at least one product id", param="product_ids")
    _check_values(statuses, TEST_STATUSES, "statuses")
    require_products(product_ids)
    tests, total = queries.list_tests(
        product_ids=list(product_ids),
        statuses=list(statuses) if statuses else None,
        limit=limit,
        offset=offset,
    )
    return {
        "tests": [_test_row(t) for t in tests],
        **page_info(total, offset, len(tests), "tests"),
        "data_as_of": to_iso(queries.oldest_sync_time(list(product_ids))),
    }


@store_call("read bug freshness")
def bugs_as_of(
    *, test_ids: Sequence[int] | None = None, product_ids: Sequence[int] | None = None
) -> tuple[datetime | None, int]:
    """When the bugs in scope were last confirmed, and how many tests never had bugs fetched.

    The oldest sync of a mutable test or of its bugs: immutable tests and their
    final bugs never change, so they do not age the data (they count only when
    nothing in scope is mutable).
    """
    T = ExploratoryTest
    mutable = T.bugs_final == 0
    bugs_at = Case(None, [(mutable, T.bugs_synced_at)])
    tests_at = Case(None, [(mutable, T.synced_at)])
    never = Case(None, [(mutable & T.bugs_synced_at.is_null(), 1)], 0)
    where = [id_in(T.id, test_ids)] if test_ids is not None else []
    if product_ids is not None:
        where.append(id_in(T.product, product_ids))
    query = T.select(fn.MIN(tests_at), fn.MIN(bugs_at), fn.MIN(T.synced_at), fn.SUM(never))
    mutable_at, fetched_at, any_at, missing = query.where(*where).tuples().get()
    oldest = _min_time(_as_time(mutable_at), _as_time(fetched_at)) or _as_time(any_at)
    return oldest, int(missing or 0)


def _as_time(value: datetime | str | None) -> datetime | None:
    return parse_iso(value)


def _min_time(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _never_fetched_hint(count: int) -> dict[str, str]:
    if not count:
        return {}
    return {
        "hint_bugs": f"Bugs of {count} test(s) were never fetched and could not be now "
        "(see warnings); call again later."
    }


def test_summary_answer(test_id: int) -> dict[str, Any]:
    """A stored test with its bug counts by status and severity.

    Raises:
        UsageError: the test is not in the local store.
    """
    test = queries.get_test(test_id)
    if test is None:
        raise UsageError(f"Test {test_id} is in neither the mirror nor the API", hint="test")
    counts = queries.bug_counts_by_test([test_id])[test_id]
    bugs_fetched = test.bugs_synced_at is not None
    as_of = _min_time(test.synced_at, None if test.bugs_final else test.bugs_synced_at)
    return {
        **_test_row(test),
        "review_status": test.review_status,
        "section_id": test.section_id,
        "bugs": {
            "total": counts["total"],
            "by_status": counts["by_status"],
            "by_severity": dict(sorted(counts["by_severity"].items())),
        },
        "bugs_fetched": bugs_fetched,
        "data_as_of": to_iso(as_of if bugs_fetched else test.synced_at),
        **_never_fetched_hint(0 if bugs_fetched else 1),
    }


@store_call("list bugs")
def _bug_page(
    test_ids: Sequence[int] | None,
    product_ids: Sequence[int] | None,
    statuses: Sequence[str] | None,
    severities: Sequence[str] | None,
    limit: int,
    offset: int,
) -> tuple[list[Bug], int]:
    where: list[Any] = []
    if test_ids is not None:
        where.append(id_in(Bug.test, test_ids))
    if product_ids is not None:
        where.append(id_in(Bug.product_id, product_ids))
    if severities:
        where.append(Bug.severity.in_(list(severities)))
    if statuses:
        where.append(
            functools.reduce(
                operator.or_,
                (bucket_condition(s, Bug.status, Bug.auto_accepted) for s in sorted(set(statuses))),
            )
        )
    query = Bug.select().where(*where)
    total = query.count()
    page = query.order_by(Bug.reported_at.desc(nulls="last"), Bug.id.desc()).limit(limit)
    return list(page.offset(offset)), total


def list_bugs_answer(
    test_ids: Sequence[int] | None = None,
    product_ids: Sequence[int] | None = None,
    statuses: Sequence[str] | None = None,
    severities: Sequence[str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of stored bugs of tests or products, newest report first.

    Raises:
        UsageError: neither tests nor products given, unknown products, statuses or
            severities.
    """
    if not test_ids and not product_ids:
        raise UsageError("Give test_ids or product_ids (list_products and list_tests show them).")
    _check_values(statuses, STATUS_BUCKETS, "statuses")
    _check_values(severities, BUG_SEVERITIES, "severities")
    if product_ids:
        require_products(product_ids)
    bugs, total = _bug_page(
        test_ids or None, product_ids or None, statuses, severities, limit, offset
    )
    as_of, never = bugs_as_of(test_ids=test_ids or None, product_ids=product_ids or None)
    tests_as_of = queries.oldest_sync_time(list(product_ids)) if product_ids else None
    return {
        "bugs": [
            {
                "id": b.id,
                "test_id": b.test_id,
                "title": b.title,
                "severity": b.severity,
                "status": status_bucket(b.status, bool(b.auto_accepted)),
                "reject_reason": b.reject_reason,
                "reported_at": to_iso(b.reported_at),
            }
            for b in bugs
        ],
        **page_info(total, offset, len(bugs), "bugs"),
        "data_as_of": to_iso(_min_time(as_of, tests_as_of)),
        **_never_fetched_hint(never),
    }


def dumps(data: Any) -> str:
    """Compact JSON: the text a model reads costs tokens, indentation included."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
