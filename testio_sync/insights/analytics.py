"""``query_metrics``: pivot the mirror by registry dimensions into registry metrics.

``MetricsQuery.parse`` validates a request (names, filters, dates, sort) and
refuses a bad one with one line naming the valid choices, before any SQL is
built. ``compile_query`` turns it into one peewee SELECT with bound parameters:
the tests in scope (the quality report's own ``ReportFilters`` condition, so the
two always agree), joined only to the tables the request needs, grouped by the
dimensions and materialized; the outer SELECT adds labels, the total row count (one
count of the materialized groups), order and limit.
``run_query`` executes it and, with ``compare_previous``, runs it again over the
previous period of equal length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from peewee import JOIN, SQL, Case, NodeList, Select, fn

from testio_sync.dates import to_iso, utc_now
from testio_sync.errors import UsageError
from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.metrics_registry import DIMENSIONS, METRICS, Dimension
from testio_sync.insights.report import require_products
from testio_sync.insights.sql_dialect import Dialect, analytics_reads, dialect_for
from testio_sync.store import backend, queries
from testio_sync.store.models import Bug, BugDevice, ExploratoryTest, TestFeature, database
from testio_sync.store.queries import store_call

MAX_DIMENSIONS = 3
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ALL_ROWS = 2**31 - 1  # a limit that keeps every row
_SCOPE_KEYS = ("product", "test_status")  # filters that become the report's scope
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def _choices(param: str, kind: str, unknown: Sequence[str], valid: Sequence[str]) -> UsageError:
    return UsageError(
        f"unknown {kind} {', '.join(unknown)}; valid: {', '.join(valid)}", param=param
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple | set) else [value]


def _filter_values(dim: Dimension, raw: Any) -> tuple[Any, ...]:
    """A filter's values read for its dimension (ids as ints, booleans as 0/1).

    Raises:
        UsageError: an empty list, or a value the dimension cannot take.
    """
    values = _as_list(raw)
    if not values:
        raise UsageError(f"{dim.name}: give a value or a non-empty list", param="filters")
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
        elif dim.kind == "id":
            try:
                out.append(int(value))
            except (TypeError, ValueError):
                raise UsageError(f"{dim.name}: {value!r} is not an id", param="filters") from None
        elif dim.kind == "bool":
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise UsageError(f"{dim.name}: use true or false, not {value!r}", param="filters")
            out.append(1 if text in _TRUE else 0)
        else:
            out.append(str(value))
    if dim.values is not None:
        bad = sorted(str(v) for v in out if v not in dim.values)
        if bad:
            raise _choices("filters", f"{dim.name} value", bad, dim.values)
    return tuple(out)


def _names(
    metrics: Sequence[str], dimensions: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Known, deduplicated metric and dimension names (at most ``MAX_DIMENSIONS``)."""
    metric_names = tuple(dict.fromkeys(m.strip() for m in metrics))
    dimension_names = tuple(dict.fromkeys(d.strip() for d in dimensions))
    if not metric_names:
        raise UsageError(f"give at least one; valid: {', '.join(METRICS)}", param="metrics")
    if unknown := [m for m in metric_names if m not in METRICS]:
        raise _choices("metrics", "metric", unknown, list(METRICS))
    if unknown := [d for d in dimension_names if d not in DIMENSIONS]:
        raise _choices("dimensions", "dimension", unknown, list(DIMENSIONS))
    if len(dimension_names) > MAX_DIMENSIONS:
        raise UsageError(
            f"at most {MAX_DIMENSIONS}, got {len(dimension_names)} ({', '.join(dimension_names)})",
            param="dimensions",
        )
    return metric_names, dimension_names


def _scope(
    products: list[Any],
    statuses: Sequence[str] | None,
    start_date: str | None,
    end_date: str | None,
) -> ReportFilters:
    """The quality report's filters; no products yet means every stored one (``run_query``)."""
    if None in products:
        raise UsageError("product: every product has an id; drop the null", param="filters")
    scope = ReportFilters.parse(
        products or [1],  # a placeholder id, dropped below: the dates and statuses are parsed
        start_date=start_date,
        end_date=end_date,
        statuses=list(statuses) if statuses is not None else None,
    )
    return scope if products else dataclasses.replace(scope, product_ids=())


def _time_dimensions(dimensions: Sequence[str]) -> list[str]:
    return [d for d in dimensions if DIMENSIONS[d].kind == "time"]


def _sort(
    metrics: tuple[str, ...], dimensions: tuple[str, ...], sort_by: str | None, order: str | None
) -> tuple[str, bool]:
    """The sort key and whether it descends: by default time ascending, else the first metric
    descending."""
    direction = (order or "").strip().lower()
    if direction not in ("", "asc", "desc"):
        raise UsageError(f"use asc or desc, not {order!r}", param="sort_order")
    if sort_by is not None and sort_by not in metrics + dimensions:
        raise UsageError(
            f"{sort_by!r} is not in the request; use one of {', '.join(metrics + dimensions)}",
            param="sort_by",
        )
    if sort_by is None:
        times = _time_dimensions(dimensions)
        sort_by = times[0] if times else metrics[0]
    if direction:
        return sort_by, direction == "desc"
    return sort_by, sort_by in metrics


def _comparable(scope: ReportFilters, dimensions: Sequence[str]) -> ReportFilters:
    """The scope of a ``compare_previous`` request: a bounded period, no time dimension."""
    if scope.start_date is None:
        raise UsageError(
            "needs a start date (the first day of the current period)", param="compare_previous"
        )
    if times := _time_dimensions(dimensions):
        raise UsageError(
            f"does not combine with the time dimension {times[0]}: the grain already shows"
            " the change",
            param="compare_previous",
        )
    if scope.end_date is None:
        return dataclasses.replace(scope, end_date=utc_now().date())
    return scope


@dataclass(frozen=True)
class MetricsQuery:
    """A validated request: names from the registry, scope as the quality report's filters."""

    metrics: tuple[str, ...]
    dimensions: tuple[str, ...]
    scope: ReportFilters
    filters: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # beyond the scope's own
    sort_by: str | None = None
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    compare_previous: bool = False
    echo: dict[str, Any] = field(default_factory=dict, compare=False)
    # The scope is every stored product: every test qualifies, and PostgreSQL does
    # better without a list of every id (it costs a bitmap scan and a worse join).
    every_product: bool = False

    @classmethod
    def parse(
        cls,
        metrics: Sequence[str],
        dimensions: Sequence[str] = (),
        filters: Mapping[str, Any] | None = None,
        *,
        start_date: str | None = None,
        end_date: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        limit: int | None = None,
        compare_previous: bool = False,
        product_ids: Sequence[int] | None = None,
    ) -> MetricsQuery:
        """Validate a request from the CLI or the MCP tool.

        ``product_ids`` defaults to every stored product.

        Raises:
            UsageError: an unknown name, too many dimensions, a bad filter, date, sort
                key or limit; the message names the valid choices.
        """
        metrics, dimensions = _names(metrics, dimensions)
        given = dict(filters or {})
        if unknown := sorted(k for k in given if k not in DIMENSIONS):
            raise _choices("filters", "filter", unknown, list(DIMENSIONS))
        parsed = {name: _filter_values(DIMENSIONS[name], raw) for name, raw in given.items()}
        scope = _scope(
            [*(product_ids or ()), *parsed.pop("product", ())],
            parsed.pop("test_status", None),
            start_date,
            end_date,
        )
        sort_by, descending = _sort(metrics, dimensions, sort_by, sort_order)
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"between 1 and {MAX_LIMIT}, not {limit}", param="limit")
        if compare_previous:
            scope = _comparable(scope, dimensions)
        echo: dict[str, Any] = {"metrics": list(metrics), "dimensions": list(dimensions)}
        if given:
            echo["filters"] = given
        return cls(
            metrics=metrics,
            dimensions=dimensions,
            scope=scope,
            filters=tuple(sorted(parsed.items())),
            sort_by=sort_by,
            descending=descending,
            limit=limit,
            compare_previous=compare_previous,
            echo=echo,
        )

    def previous(self) -> MetricsQuery:
        """The same query over the period of equal length just before this one."""
        start, end = self.scope.start_date, self.scope.end_date
        assert start is not None and end is not None
        length = (end - start).days + 1
        scope = dataclasses.replace(
            self.scope, start_date=start - timedelta(days=length), end_date=start - timedelta(1)
        )
        # Every previous row: the current rows' keys may sort anywhere in that period.
        return dataclasses.replace(self, scope=scope, limit=ALL_ROWS, compare_previous=False)


# -- the compiler ------------------------------------------------------------------------


class _Sources:
    """Table aliases of one query and its counting helpers (the registry's ``Sources``)."""

    def __init__(self, joins: set[str], dialect: Dialect) -> None:
        self.dialect = dialect
        self.t = ExploratoryTest.alias("t")
        self.scope: Any = None  # the CTE of the tests in scope, set by compile_query
        self.ts: Any = None
        self.tf = TestFeature.alias("tf") if "tf" in joins else None
        self.dv = BugDevice.alias("dv") if "dv" in joins else None
        # A device row carries its bug's columns: with devices, bugs are read from it.
        self.b = self.dv if self.dv is not None else Bug.alias("b") if "b" in joins else None
        self.bug_id = None if self.b is None else self.dv.bug_id if self.dv else self.b.id
        self.bug_test = None if self.b is None else self.dv.test_id if self.dv else self.b.test
        self.cu: Any = None
        self.wants_customers = "cu" in joins
        # Any join beyond tests repeats a test; devices, customers and features repeat a bug.
        self.tests_repeat = bool(joins)
        self.bugs_repeat = bool(joins & {"dv", "cu", "tf"})

    def use_scope(self, scope: Any) -> None:
        """Read tests from the scope CTE; customers are its creators and submitters."""
        self.ts = scope.c
        if self.wants_customers:
            created = Select(
                from_list=[scope],
                columns=[scope.c.id.alias("test_id"), scope.c.created_by.alias("name")],
            ).where(scope.c.created_by.is_null(False))
            submitted = Select(
                from_list=[scope],
                columns=[scope.c.id.alias("test_id"), scope.c.submitted_by.alias("name")],
            ).where(scope.c.submitted_by.is_null(False))
            self.cu = (created | submitted).alias("cu")

    def count_tests(self, condition: Any = None) -> Any:
        return self._count(self.ts.id, condition, distinct=self.tests_repeat)

    def count_bugs(self, condition: Any = None) -> Any:
        return self._count(self.bug_id, condition, distinct=self.bugs_repeat)

    def ratio(self, numerator: Any, denominator: Any) -> Any:
        return self.dialect.real(numerator) / fn.NULLIF(denominator, 0)

    @staticmethod
    def _count(column: Any, condition: Any, *, distinct: bool) -> Any:
        value = column if condition is None else Case(None, [(condition, column)])
        return fn.COUNT(NodeList((SQL("DISTINCT"), value)) if distinct else value)


def _joins(query: MetricsQuery) -> tuple[set[str], bool]:
    """The tables the request needs, and whether bugs are grouped or filtered (inner join)."""
    names = [*query.dimensions, *(name for name, _ in query.filters)]
    joins: set[str] = set()
    for name in names:
        joins |= DIMENSIONS[name].joins
    bug_grouped = "b" in joins
    for name in query.metrics:
        joins |= METRICS[name].joins
    return joins, bug_grouped


def _matches(key: Any, wanted: Sequence[Any]) -> Any:
    """``key`` is one of ``wanted`` (None in it matches NULL)."""
    present = [v for v in wanted if v is not None]
    condition = key.in_(present) if present else None
    if None in wanted:
        condition = key.is_null() if condition is None else condition | key.is_null()
    return condition


def _scope_cte(query: MetricsQuery, src: _Sources) -> Any:
    """The tests in scope, with the keys of the test-level dimensions, computed once per test.

    Materialized, so that a time bucket is worked out per test and not per joined bug.
    """
    t = src.t
    names = [*query.dimensions, *(n for n, _ in query.filters)]
    test_level = [n for n in dict.fromkeys(names) if not DIMENSIONS[n].joins]
    columns = [t.id, t.created_by, t.submitted_by]
    columns += [DIMENSIONS[n].key(src).alias(n) for n in test_level]
    # SQLite reads the tests through a covering index that leads with the product, so
    # it keeps the list even when it names every product.
    whole = query.every_product and backend.is_postgres()
    where, params = query.scope.where_sql("t", products=not whole)
    conditions: list[Any] = [SQL(backend.sql(where), params)]
    conditions += [
        _matches(DIMENSIONS[n].key(src), wanted) for n, wanted in query.filters if n in test_level
    ]
    return t.select(*columns).where(*conditions).cte("ts", materialized=True)


def compile_query(query: MetricsQuery, dialect: Dialect | None = None) -> Select:
    """One SELECT answering ``query``: its rows, each with ``total_rows``.

    The scope's product ids must be filled in (``run_query`` does it). The dialect
    defaults to the bound database's.
    """
    dialect = dialect or dialect_for()
    joins, bug_grouped = _joins(query)
    src = _Sources(joins, dialect)
    scope = _scope_cte(query, src)
    src.use_scope(scope)

    def key(name: str) -> Any:
        dim = DIMENSIONS[name]
        return dim.key(src) if dim.joins else getattr(scope.c, name)

    keys = [key(d).alias(d) for d in query.dimensions]
    values = [METRICS[m].build(src).alias(m) for m in query.metrics]
    inner = Select(from_list=[scope], columns=[*keys, *values])
    # Bugs follow the feature they were reported on when features group or filter them.
    feature_tied = src.tf is not None and any(
        "tf" in DIMENSIONS[n].joins for n in [*query.dimensions, *dict(query.filters)]
    )
    if src.tf is not None:
        kind = JOIN.INNER if feature_tied else JOIN.LEFT_OUTER
        inner = inner.join(src.tf, kind, on=src.tf.test == scope.c.id)
    if src.cu is not None:
        inner = inner.join(src.cu, JOIN.INNER, on=src.cu.c.test_id == scope.c.id)
    if src.b is not None:
        on = src.bug_test == scope.c.id
        if feature_tied:
            on &= src.b.feature_id == src.tf.feature_id
        grouped = bug_grouped or src.dv is not None  # device rows are always joined inner
        inner = inner.join(src.b, JOIN.INNER if grouped else JOIN.LEFT_OUTER, on=on)
    conditions = [
        _matches(DIMENSIONS[n].key(src), wanted)
        for n, wanted in query.filters
        if DIMENSIONS[n].joins
    ]
    if conditions:
        inner = inner.where(*conditions)
    if keys:
        inner = inner.group_by(*[SQL(str(i + 1)) for i in range(len(keys))])
    # Materialized once: its rows are both counted and ordered. (A ``COUNT(*) OVER ()``
    # window copied every group row once more before the sort: 20 ms for 42,000 groups.)
    agg = inner.cte("agg", materialized=True)
    columns: list[Any] = []
    for name in query.dimensions:
        dim = DIMENSIONS[name]
        columns.append(agg.c[name])
        if dim.label and dim.label_of:
            label = dim.label_of(agg.c[name], dialect)
            columns.append(NodeList((label, SQL(f'AS "{dim.label}"'))))
    columns += [agg.c[m] for m in query.metrics]
    columns.append(Select(from_list=[agg], columns=[fn.COUNT(SQL("*"))]).alias("total_rows"))
    sort = agg.c[query.sort_by]
    order = [sort.desc(nulls="LAST") if query.descending else sort.asc(nulls="LAST")]
    order += [agg.c[d].asc(nulls="LAST") for d in query.dimensions if d != query.sort_by]
    outer = Select(from_list=[agg], columns=columns).with_cte(scope, agg)
    return outer.order_by(*order).limit(query.limit)


# -- running it ---------------------------------------------------------------------------


def _scoped(query: MetricsQuery) -> MetricsQuery:
    """The query with its products filled in: the given ones (checked) or every stored one.

    Raises:
        UsageError: a product is not stored, or nothing is stored yet.
    """
    if query.scope.product_ids:
        require_products(query.scope.product_ids)
        return query
    stored = queries.product_ids()
    if not stored:
        raise UsageError("The mirror holds no products yet: sync first", hint="products")
    return dataclasses.replace(
        query,
        scope=dataclasses.replace(query.scope, product_ids=tuple(stored)),
        every_product=True,
    )


def _fetch(query: MetricsQuery, dialect: Dialect) -> tuple[list[dict[str, Any]], int]:
    select = compile_query(query, dialect)
    sql, params = database.get_sql_context().sql(select).query()
    with analytics_reads():
        cursor = database.execute_sql(sql, params)
        records = cursor.fetchall()
    names = [c[0] for c in cursor.description]
    rows: list[dict[str, Any]] = []
    total = 0
    for record in records:
        row = dict(zip(names, record, strict=True))
        total = row.pop("total_rows")
        for name in query.metrics:
            digits = METRICS[name].digits
            if digits is not None and row[name] is not None:
                row[name] = round(row[name], digits)
        if "known_bug" in row and row["known_bug"] is not None:
            row["known_bug"] = bool(row["known_bug"])
        rows.append(row)
    return rows, total


@store_call("read data freshness for analytics")
def _data_as_of(scope: ReportFilters) -> datetime | None:
    """The oldest sync time of the data used, as the quality report computes it."""
    tests_at = queries.oldest_sync_time(list(scope.product_ids))
    if tests_at is None:
        return None
    where, params = scope.where_sql("t")
    (oldest,) = backend.execute(
        f"SELECT MIN(t.bugs_synced_at) FROM tests t WHERE {where} AND t.bugs_final = 0", params
    ).fetchone()
    if oldest is None:
        return tests_at
    return min(tests_at, datetime.fromisoformat(oldest.replace("Z", "+00:00")))


def _chart_hint(query: MetricsQuery) -> dict[str, Any] | None:
    """A line over a time dimension, else bars; the other dimension as series."""
    if not query.dimensions or len(query.dimensions) > 2:
        return None
    times = _time_dimensions(query.dimensions)
    x = times[0] if times else query.dimensions[0]
    hint: dict[str, Any] = {"type": "line" if times else "bar", "x": x, "y": query.metrics[0]}
    if rest := [d for d in query.dimensions if d != x]:
        hint["series"] = rest[0]
    return hint


def _period(scope: ReportFilters) -> dict[str, str | None]:
    def day(value: date | None) -> str | None:
        return value.isoformat() if value else None

    return {"start_date": day(scope.start_date), "end_date": day(scope.end_date)}


@store_call("query metrics")
def run_query(query: MetricsQuery, dialect: Dialect | None = None) -> dict[str, Any]:
    """``{rows, total_rows, data_as_of}``, plus a chart hint and the previous period's values.

    Raises:
        UsageError: a product is not stored, or the store is empty.
        StoreError: the database cannot be read.
    """
    query = _scoped(query)
    dialect = dialect or dialect_for()
    rows, total = _fetch(query, dialect)
    answer: dict[str, Any] = {**query.echo, "rows": rows, "total_rows": total}
    if query.compare_previous:
        _add_previous(query, rows, dialect)
        answer["period"] = _period(query.scope)
        answer["previous_period"] = _period(query.previous().scope)
    if hint := _chart_hint(query):
        answer["chart"] = hint
    answer["data_as_of"] = to_iso(_data_as_of(query.scope))
    return answer


def _add_previous(query: MetricsQuery, rows: list[dict[str, Any]], dialect: Dialect) -> None:
    """Add ``<metric>_previous`` and ``<metric>_change`` (current minus previous) to rows."""
    previous, _ = _fetch(query.previous(), dialect)
    before = {tuple(r[d] for d in query.dimensions): r for r in previous}
    for row in rows:
        old = before.get(tuple(row[d] for d in query.dimensions), {})
        for name in query.metrics:
            was = old.get(name, 0 if METRICS[name].digits is None else None)
            row[f"{name}_previous"] = was
            now = row[name]
            change = None if now is None or was is None else now - was
            digits = METRICS[name].digits
            row[f"{name}_change"] = (
                round(change, digits) if change is not None and digits else change
            )


def explain(query: MetricsQuery, dialect: Dialect | None = None) -> list[str]:
    """The engine's query plan of ``query``, one line per step (the benchmark prints it).

    SQLite's ``EXPLAIN QUERY PLAN`` details, or PostgreSQL's ``EXPLAIN`` text.
    """

    @store_call("explain a metrics query")
    def plan() -> list[str]:
        scoped = _scoped(query)
        sql, params = database.get_sql_context().sql(compile_query(scoped, dialect)).query()
        if backend.is_postgres():
            with analytics_reads():
                return [row[0] for row in database.execute_sql(f"EXPLAIN {sql}", params)]
        return [row[-1] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params)]

    return plan()
