"""Which tests a quality report covers: products plus filters, or explicit test ids.

The MCP tool and the CLI pass their raw arguments to ``ReportFilters.parse``,
so both refuse the same bad input with the same one-line reasons.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from testio_sync.dates import parse_since, to_stored
from testio_sync.errors import UsageError
from testio_sync.store import backend

TEST_STATUSES = (
    "initialized",
    "waiting",
    "running",
    "locked",
    "customer_finalized",
    "archived",
    "cancelled",
)
EXECUTED_STATUSES = ("running", "locked", "archived", "customer_finalized")
"""Tests that were (or are being) executed: the report's default scope."""


def parse_day(text: str, name: str) -> date:
    """An ISO date (``2026-01-31``), or a relative day as ``sync_data``'s ``since`` takes.

    Raises:
        UsageError: the text is neither.
    """
    raw = text.strip()
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        pass
    try:
        return parse_since(raw).date()
    except UsageError as exc:
        raise UsageError(str(exc), param=name) from None


@dataclass(frozen=True)
class ReportFilters:
    """Which tests a report covers: products plus either filters or explicit test ids."""

    product_ids: tuple[int, ...]
    start_date: date | None = None
    end_date: date | None = None
    statuses: tuple[str, ...] | None = EXECUTED_STATUSES
    testing_type: str | None = None
    test_ids: tuple[int, ...] | None = None

    @classmethod
    def parse(
        cls,
        product_ids: Sequence[int],
        *,
        start_date: str | None = None,
        end_date: str | None = None,
        statuses: Sequence[str] | None = None,
        testing_type: str | None = None,
        test_ids: Sequence[int] | None = None,
    ) -> ReportFilters:
        """Validate tool or CLI arguments into filters.

        Raises:
            UsageError: a bad id, date, status, or test ids mixed with filters.
        """
        ids = tuple(sorted(set(product_ids)))
        if not ids:
            raise UsageError("give at least one product id", param="product_ids")
        if any(i <= 0 for i in ids):
            raise UsageError("product ids must be positive whole numbers", param="product_ids")
        if test_ids is not None:
            if start_date or end_date or statuses is not None or testing_type:
                raise UsageError(
                    "test ids replace the filters: drop the date, status and testing type filters",
                    param="test_ids",
                )
            tests = tuple(sorted(set(test_ids)))
            if not tests or any(i <= 0 for i in tests):
                raise UsageError("test ids must be positive whole numbers", param="test_ids")
            return cls(product_ids=ids, statuses=None, test_ids=tests)
        start = parse_day(start_date, "start_date") if start_date else None
        end = parse_day(end_date, "end_date") if end_date else None
        if start and end and start > end:
            raise UsageError(f"{start} is after the end date {end}", param="start_date")
        if statuses is not None:
            unknown = sorted(set(statuses) - set(TEST_STATUSES))
            if unknown or not statuses:
                raise UsageError(
                    f"unknown {', '.join(unknown) or '(empty list)'}; "
                    f"use {', '.join(TEST_STATUSES)}",
                    param="statuses",
                )
        return cls(
            product_ids=ids,
            start_date=start,
            end_date=end,
            statuses=tuple(sorted(set(statuses))) if statuses is not None else EXECUTED_STATUSES,
            testing_type=testing_type.strip() if testing_type else None,
        )

    def to_dict(self) -> dict[str, Any]:
        if self.test_ids is not None:
            return {"test_ids": list(self.test_ids)}
        out: dict[str, Any] = {"statuses": list(self.statuses or ())}
        if self.start_date:
            out["start_date"] = self.start_date.isoformat()
        if self.end_date:
            out["end_date"] = self.end_date.isoformat()
        if self.testing_type:
            out["testing_type"] = self.testing_type
        return out

    def where_sql(self, alias: str = "t", *, products: bool = True) -> tuple[str, list[Any]]:
        """The SQL condition selecting the tests in scope, and its parameters.

        Our SQL form (``?`` marks) for the bound database: run it through
        ``backend.execute`` or ``backend.sql``. ``products=False`` leaves the
        product condition out, for a scope known to hold every stored product.
        """
        ids, texts = backend.in_ids(), backend.in_texts()
        clauses = ["1 = 1"]
        params: list[Any] = []
        if products or self.test_ids is not None:
            clauses = [f"{alias}.product_id {ids}"]
            params.append(json.dumps(list(self.product_ids)))
        if self.test_ids is not None:
            clauses.append(f"{alias}.id {ids}")
            params.append(json.dumps(list(self.test_ids)))
            return " AND ".join(clauses), params
        if self.statuses is not None:
            clauses.append(f"{alias}.status {texts}")
            params.append(json.dumps(list(self.statuses)))
        if self.testing_type:
            clauses.append(f"{alias}.testing_type = ?")
            params.append(self.testing_type)
        if self.start_date:
            clauses.append(f"{alias}.end_at >= ?")
            params.append(_day_text(self.start_date))
        if self.end_date:
            # Whole days: everything that ends before the next day's midnight UTC.
            clauses.append(f"{alias}.end_at < ?")
            params.append(_day_text(self.end_date + timedelta(days=1)))
        return " AND ".join(clauses), params


def _day_text(day: date) -> str:
    """Midnight UTC of ``day`` as the store writes times (they compare as text)."""
    return to_stored(datetime(day.year, day.month, day.day, tzinfo=UTC))
