"""The analytics registry: every dimension and metric, what it means and how it is computed.

A dimension groups (and filters) the tests in scope, or their bugs; a metric is
an aggregate over each group. Both are written as peewee expressions over the
table aliases a ``Sources`` object hands out, so only these names, never a
caller's text, reach the SQL. A dimension without ``joins`` is a fact of the
test, computed once per test in the query's scope; ``joins`` says which tables
beyond ``tests`` an entry needs: ``tf`` test features, ``cu`` a test's customers, ``b`` bugs,
``dv`` a bug's devices. Counts are distinct wherever a join fans out, so no rate
leaves 0..1. Dates and time grains are the test's ``end_at`` (UTC), as in the
quality report.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from testio_sync.insights.filters import TEST_STATUSES
from testio_sync.insights.sql_dialect import TIME_GRAINS, Dialect
from testio_sync.store.queries import STATUS_BUCKETS, bucket_case, bucket_condition


class Sources(Protocol):
    """The table aliases of one compiled query, and its counting helpers."""

    t: Any  # tests, inside the scope (test-level dimension keys are computed there)
    ts: Any  # the scope's columns outside it: id, created_by, submitted_by, test-level keys
    tf: Any  # test features (feature dimension and features_tested)
    cu: Any  # a test's customers: (test_id, name) from created_by and submitted_by
    b: Any  # bugs; with devices, the device rows (they carry the bug columns read here)
    dv: Any  # bug devices: one row per (device, browser)
    dialect: Dialect

    def count_tests(self, condition: Any = None) -> Any: ...

    def count_bugs(self, condition: Any = None) -> Any: ...

    def ratio(self, numerator: Any, denominator: Any) -> Any: ...


Build = Callable[[Sources], Any]


@dataclass(frozen=True)
class Entry:
    """A registry name and the one line that explains it."""

    name: str
    description: str


@dataclass(frozen=True)
class Dimension(Entry):
    key: Build
    joins: frozenset[str] = frozenset()
    kind: str = "text"  # text, id, bool or time: how filter values are read
    label: str | None = None  # the extra column naming an id, e.g. product_name
    label_of: Callable[[Any, Dialect], Any] | None = None  # from the grouped key column
    values: tuple[str, ...] | None = None  # the only valid filter values, when closed


@dataclass(frozen=True)
class Metric(Entry):
    build: Build
    joins: frozenset[str] = frozenset()
    digits: int | None = None  # rounding of a ratio; None for a count


def _with_label(
    name: str, description: str, key: Build, label: str, source: str, **kw: Any
) -> Dimension:
    """An id-valued dimension whose rows also carry a name, looked up as ``table.column``."""
    from peewee import SQL, NodeList

    table, column = source.split(".")

    def label_of(value: Any, dialect: Dialect) -> Any:
        return NodeList((SQL(f'(SELECT "{column}" FROM "{table}" WHERE "id" ='), value, SQL(")")))

    return Dimension(name, description, key, kind="id", label=label, label_of=label_of, **kw)


def _time(grain: str) -> Dimension:
    examples = {
        "day": "2026-11-27",
        "week": "ISO week, 2026-W48",
        "month": "2026-11",
        "quarter": "2026-Q4",
        "year": "2026",
    }
    return Dimension(
        grain,
        f"{grain.capitalize()} of the test's end, UTC ({examples[grain]}).",
        # The week is stored with each test (its ISO arithmetic is the costly bucket).
        (lambda s: s.t.end_week)
        if grain == "week"
        else lambda s: s.dialect.time_bucket(grain, s.t.end_at),
        kind="time",
    )


_BUG = frozenset({"b"})
_DEVICE = frozenset({"b", "dv"})

DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        _with_label("product", "Product.", lambda s: s.t.product, "product_name", "products.name"),
        Dimension(
            "section",
            "Product section of the test.",
            lambda s: s.t.section_id,
            kind="id",
            label="section_name",
            label_of=lambda key, dialect: dialect.section_name(key),
        ),
        _with_label(
            "feature",
            "Feature: a test counts under each feature it covers,"
            " a bug under the feature it was reported on.",
            lambda s: s.tf.feature_id,
            "feature_name",
            "features.title",
            joins=frozenset({"tf"}),
        ),
        _with_label("test", "Test.", lambda s: s.t.id, "test_title", "tests.title"),
        Dimension("tester", "Bug author (tester name).", lambda s: s.b.author_name, _BUG),
        Dimension(
            "customer",
            "Customer user who created or submitted the test.",
            lambda s: s.cu.c.name,
            joins=frozenset({"cu"}),
        ),
        Dimension("severity", "Bug severity.", lambda s: s.b.severity, _BUG),
        Dimension(
            "bug_status",
            "Bug status bucket: active_accepted, auto_accepted, rejected, open (forwarded),"
            " unknown (missing or unrecognised).",
            lambda s: bucket_case(s.b.status, s.b.auto_accepted),
            _BUG,
            values=STATUS_BUCKETS,
        ),
        Dimension(
            "test_status",
            "Test status; filtering on it replaces the default (executed tests).",
            lambda s: s.t.status,
            values=TEST_STATUSES,
        ),
        Dimension("testing_type", "Testing type of the test.", lambda s: s.t.testing_type),
        Dimension(
            "rejection_reason",
            "Why a rejected bug was rejected (null for other bugs).",
            lambda s: s.b.reject_reason,
            _BUG,
        ),
        Dimension(
            "known_bug", "Whether the bug was a known bug.", lambda s: s.b.known, _BUG, kind="bool"
        ),
        Dimension(
            "platform",
            "Operating system of a device the bug was found on.",
            lambda s: s.dv.operating_system,
            _DEVICE,
        ),
        Dimension(
            "browser", "Browser of a device the bug was found on.", lambda s: s.dv.browser, _DEVICE
        ),
        Dimension(
            "device_category",
            "Device category (Computers, Smartphones, ...) the bug was found on.",
            lambda s: s.dv.category,
            _DEVICE,
        ),
        Dimension(
            "test_environment",
            "Test environment title.",
            lambda s: s.t.environment_title,
        ),
        *(_time(grain) for grain in TIME_GRAINS),
    )
}

SEVERITY_WEIGHTS: dict[str, int] = {
    "critical": 5,
    "high": 3,
    "low": 1,
    "visual": 1,
    "content": 1,
}
"""Weights of ``bug_severity_score``; other severities (custom, missing) weigh 0."""

ALL_BUGS: tuple[str, ...] = STATUS_BUCKETS
RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    # name: (numerator buckets, denominator buckets, description) as in the quality report
    "active_acceptance_rate": (
        ("active_accepted",),
        ALL_BUGS,
        "Bugs accepted by a person / all bugs.",
    ),
    "auto_acceptance_rate": (
        ("auto_accepted",),
        ("active_accepted", "auto_accepted"),
        "Auto-accepted bugs / accepted bugs.",
    ),
    "overall_acceptance_rate": (
        ("active_accepted", "auto_accepted"),
        ALL_BUGS,
        "Accepted bugs (by a person or automatically) / all bugs.",
    ),
    "rejection_rate": (("rejected",), ALL_BUGS, "Rejected bugs / all bugs."),
    "review_rate": (
        ("active_accepted", "rejected"),
        ALL_BUGS,
        "Bugs reviewed by a person (accepted or rejected) / all bugs.",
    ),
}


def _in_buckets(s: Sources, buckets: Sequence[str]) -> Any:
    """True for bugs in any of ``buckets``; None (no condition) for every bucket."""
    if set(buckets) == set(STATUS_BUCKETS):
        return None
    parts = (bucket_condition(b, s.b.status, s.b.auto_accepted) for b in buckets)
    return functools.reduce(operator.or_, parts)


def _rate(name: str) -> Metric:
    numerator, denominator, description = RATES[name]
    return Metric(
        name,
        f"{description} Null when the denominator is 0.",
        lambda s: s.ratio(
            s.count_bugs(_in_buckets(s, numerator)), s.count_bugs(_in_buckets(s, denominator))
        ),
        _BUG,
        digits=4,
    )


def _severity_score(s: Sources) -> Any:
    terms = [s.count_bugs(s.b.severity == sev) * weight for sev, weight in SEVERITY_WEIGHTS.items()]
    return functools.reduce(operator.add, terms)


def _by_customer(name: str, column: str, who: str, verb: str) -> Metric:
    """Tests with a creator (or submitter); by that customer under the customer dimension."""

    def build(s: Sources) -> Any:
        person = getattr(s.ts, column)
        return s.count_tests(person == s.cu.c.name if s.cu is not None else person.is_null(False))

    return Metric(
        name, f"Tests with {who} (with the customer dimension: {verb} by that customer).", build
    )


def _count_distinct(column: Any) -> Any:
    from peewee import SQL, NodeList, fn

    return fn.COUNT(NodeList((SQL("DISTINCT"), column)))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("test_count", "Tests.", lambda s: s.count_tests()),
        Metric("bug_count", "Bugs (every status).", lambda s: s.count_bugs(), _BUG),
        Metric(
            "bugs_per_test",
            "Bugs / tests.",
            lambda s: s.ratio(s.count_bugs(), s.count_tests()),
            _BUG,
            digits=2,
        ),
        Metric(
            "bug_severity_score",
            "Weighted bug count: critical 5, high 3, low, visual and content 1, others 0.",
            _severity_score,
            _BUG,
        ),
        Metric(
            "critical_bug_count",
            "Bugs of severity critical.",
            lambda s: s.count_bugs(s.b.severity == "critical"),
            _BUG,
        ),
        Metric(
            "features_tested",
            "Distinct features the tests covered.",
            lambda s: _count_distinct(s.tf.feature_id),
            frozenset({"tf"}),
        ),
        Metric(
            "active_testers",
            "Distinct testers who reported bugs.",
            lambda s: _count_distinct(s.b.author_name),
            _BUG,
        ),
        _by_customer("tests_created", "created_by", "a creator", "created"),
        _by_customer("tests_submitted", "submitted_by", "a submitter", "submitted"),
        Metric(
            "known_bug_rate",
            "Known bugs / all bugs. Null when there are no bugs.",
            lambda s: s.ratio(s.count_bugs(s.b.known == 1), s.count_bugs()),
            _BUG,
            digits=4,
        ),
        *(_rate(name) for name in RATES),
    )
}


def registry() -> dict[str, Any]:
    """The registry as data: names and descriptions (the MCP resource and ``--list``)."""
    return {
        "dimensions": {
            name: d.description + (f" An id; rows add {d.label}." if d.label else "")
            for name, d in DIMENSIONS.items()
        },
        "metrics": {name: m.description for name, m in METRICS.items()},
        "notes": (
            "Up to 3 dimensions. filters: {dimension: value or list}. Dates and time grains"
            " use the test's end (UTC); tests default to the executed statuses unless"
            " test_status is filtered. Counts are distinct, so rates stay within 0..1."
        ),
    }
