"""``sync --dry-run``: what a request would do, judged from the store alone, and its text.

No API call and no write: the plan reads product freshness and stored test
counts and estimates the API requests each phase would make, so a user can
see the cost of ``--force`` or ``--nuke`` before paying it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from testio_sync.cli.render import age_of, format_time, plural
from testio_sync.settings import Settings
from testio_sync.store import queries
from testio_sync.sync.types import SyncOptions, SyncPhase, SyncRequest

# The page walker asks for 25 tests a page; bug batches carry about 15 test ids.
TEST_PAGE_SIZE = 25
BUG_BATCH_SIZE = 15
# An incremental walk stops one page after the first page holding a stored test.
INCREMENTAL_PAGES = 2


def mode_of(options: SyncOptions) -> str:
    if options.nuke:
        return "nuke"
    if options.force_refresh:
        return "force"
    if options.incremental_only:
        return "incremental-only"
    return "default"


def _ceil(count: int, size: int) -> int:
    return math.ceil(count / size) if count > 0 else 0


def _stale(synced_at: datetime | None, settings: Settings, now: datetime) -> bool:
    return synced_at is None or now - synced_at > timedelta(seconds=settings.cache_ttl_s)


def build_plan(request: SyncRequest, settings: Settings, *, now: datetime) -> dict[str, Any]:
    """The dry-run report: mode, phases, products in scope and a request estimate."""
    phases = set(request.phases)
    options = request.options
    full_walk = options.force_refresh or options.nuke
    stored = {row["id"]: row for row in queries.product_freshness()}
    shapes = {
        p.id: (bool(p.is_sectioned), len(p.section_ids or ())) for p in queries.list_products()
    }
    wanted = request.scope.product_ids
    scoped = list(wanted) if wanted is not None else sorted(stored)
    estimate = {"products": 0, "features": 0, "new_tests": 0, "bugs": 0}
    unknown: list[str] = []
    missing = [pid for pid in scoped if pid not in stored]

    if SyncPhase.PRODUCTS in phases or (wanted is None and not stored):
        estimate["products"] = 1
    else:
        estimate["products"] = len(missing)  # fetched one by one before the first phase
    if wanted is None and not stored:
        unknown.append("no product is stored yet: the product list decides what follows")

    products: list[dict[str, Any]] = []
    never_walked = 0
    for pid in scoped:
        row = stored.get(pid)
        products.append(
            {
                "id": pid,
                "name": row["name"] if row else None,
                "synced_at": row["synced_at"] if row else None,
                "features_synced_at": row["features_synced_at"] if row else None,
                "tests_synced_at": row["tests_synced_at"] if row else None,
                "test_count": row["test_count"] if row else 0,
            }
        )
        if SyncPhase.FEATURES in phases and (
            row is None or full_walk or _stale(row["features_synced_at"], settings, now)
        ):
            sectioned, sections = shapes.get(pid, (False, 0))
            estimate["features"] += max(1, sections) if sectioned else 1
        if SyncPhase.NEW_TESTS in phases:
            if row is None or row["tests_synced_at"] is None:
                never_walked += 1
            elif full_walk:
                estimate["new_tests"] += _ceil(row["test_count"], TEST_PAGE_SIZE) + 1
            else:
                estimate["new_tests"] += INCREMENTAL_PAGES
    if never_walked:
        unknown.append(
            f"a full test walk of {never_walked} product(s) never synced "
            f"(1 request per {TEST_PAGE_SIZE} tests)"
        )

    if SyncPhase.BUGS in phases and scoped:
        since = request.scope.since_date
        if full_walk:
            _, due = queries.list_tests(product_ids=scoped, start=since, limit=0)
        else:
            due = len(
                queries.tests_needing_bugs(
                    product_ids=scoped, since=since, ttl_s=settings.cache_ttl_s, now=now
                )
            )
        estimate["bugs"] = _ceil(due, BUG_BATCH_SIZE)
        if SyncPhase.NEW_TESTS in phases:
            unknown.append("the bugs of tests this run discovers")

    return {
        "dry_run": True,
        "mode": mode_of(options),
        "request": request.to_dict(),
        "products": products,
        "estimate": {**estimate, "total": sum(estimate.values()), "unknown": unknown},
    }


def plan_lines(plan: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """``sync --dry-run`` as text; ``plan`` comes from ``cli_plan.build_plan``."""
    now = now or datetime.now(UTC)
    request = plan["request"]
    since = request["scope"]["since_date"]
    lines = [
        "Dry run: nothing is fetched, written or enqueued.",
        f"Mode: {plan['mode']} (phases: {', '.join(request['phases'])})",
        f"Since: {format_time(since) if since else 'all time'}",
    ]
    products = plan["products"]
    if products:
        lines.append(f"Products in scope ({len(products)}):")
        width = max(len(str(p["name"] or "")) for p in products)
        for product in products:
            if product["name"] is None:
                lines.append(f"  {product['id']:>8}  not synced yet")
                continue
            lines.append(
                f"  {product['id']:>8}  {product['name']:<{width}}  "
                f"{plural(product['test_count'], 'tests'):>11}  "
                f"tests synced {age_of(product['tests_synced_at'], now)}, "
                f"features {age_of(product['features_synced_at'], now)}"
            )
    else:
        lines.append("Products in scope: all, once the product list is fetched")
    estimate = plan["estimate"]
    lines.append(f"Estimated API requests: {estimate['total']:,}")
    for phase in ("products", "features", "new_tests", "bugs"):
        if phase in request["phases"] or estimate[phase]:
            lines.append(f"  {phase:<10} {estimate[phase]:>6,}")
    for item in estimate["unknown"]:
        lines.append(f"  plus {item}")
    return lines
