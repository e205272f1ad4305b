"""The vocabulary of a sync: phases, scope, options, status words and the result.

Every status and phase word is an enum value defined once here; the database,
the CLI and the MCP tools show the same strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from testio_sync.dates import parse_api_time, to_iso
from testio_sync.errors import UsageError


class SyncPhase(StrEnum):
    """Phases, declared in the order they always run."""

    PRODUCTS = "products"
    FEATURES = "features"
    NEW_TESTS = "new_tests"
    BUGS = "bugs"

    @classmethod
    def ordered(cls, phases: list[SyncPhase] | tuple[SyncPhase, ...]) -> tuple[SyncPhase, ...]:
        """The given phases, deduplicated, in run order."""
        wanted = set(phases)
        return tuple(p for p in cls if p in wanted)


ENTITY_PHASES: dict[str, SyncPhase] = {
    "products": SyncPhase.PRODUCTS,
    "features": SyncPhase.FEATURES,
    "tests": SyncPhase.NEW_TESTS,
    "bugs": SyncPhase.BUGS,
}
"""``SyncScope.entity_types`` values and the phase that refreshes each."""

DEFAULT_PHASES: tuple[SyncPhase, ...] = (
    SyncPhase.PRODUCTS,
    SyncPhase.FEATURES,
    SyncPhase.NEW_TESTS,
)


def sync_phases(*, with_bugs: bool) -> tuple[SyncPhase, ...]:
    """The default phases, plus BUGS for the CLI's ``--with-bugs`` and MCP's ``with_bugs``."""
    return (*DEFAULT_PHASES, SyncPhase.BUGS) if with_bugs else DEFAULT_PHASES


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished, with errors
    FAILED = "failed"
    ABANDONED = "abandoned"  # the process running it died

    @property
    def finished(self) -> bool:
        return self not in (SyncStatus.QUEUED, SyncStatus.RUNNING)


class SyncTrigger(StrEnum):
    CLI = "cli"
    MCP = "mcp"
    SCHEDULER = "scheduler"


@dataclass(frozen=True)
class SyncScope:
    """What a sync covers. ``None`` means everything (all products, no date limit, all entities).

    ``entity_types`` (keys of ``ENTITY_PHASES``) limits which entities a run
    refreshes: a request keeps only the phases of those entities. ``account`` is
    whose data (``sync.account``: base URL and token fingerprint, as JSON); None
    when the requester had no token and leaves it to the worker.
    """

    product_ids: tuple[int, ...] | None = None
    since_date: datetime | None = None
    entity_types: tuple[str, ...] | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        if self.product_ids is not None:
            ids = tuple(sorted(set(self.product_ids)))
            if not ids or any(not isinstance(i, int) or i <= 0 for i in ids):
                raise UsageError("product ids must be positive whole numbers", param="product_ids")
            object.__setattr__(self, "product_ids", ids)
        if self.entity_types is not None:
            unknown = sorted(set(self.entity_types) - set(ENTITY_PHASES))
            if unknown or not self.entity_types:
                raise UsageError(
                    f"unknown {', '.join(unknown) or '(empty list)'}; "
                    f"use {', '.join(ENTITY_PHASES)}",
                    param="entity_types",
                )
            ordered = tuple(e for e in ENTITY_PHASES if e in set(self.entity_types))
            object.__setattr__(self, "entity_types", ordered)

    def covers(self, other: SyncScope) -> bool:
        """True when every product and test ``other`` reaches, this scope reaches too."""
        if other.account is not None and self.account != other.account:
            return False  # another account's run never answers this request
        if self.product_ids is not None and (
            other.product_ids is None or not set(other.product_ids) <= set(self.product_ids)
        ):
            return False
        if self.since_date is None:
            return True
        return other.since_date is not None and other.since_date >= self.since_date

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_ids": list(self.product_ids) if self.product_ids is not None else None,
            "since_date": to_iso(self.since_date),
            "entity_types": list(self.entity_types) if self.entity_types else None,
            "account": self.account,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncScope:
        ids = data.get("product_ids")
        types = data.get("entity_types")
        return cls(
            product_ids=tuple(ids) if ids is not None else None,
            since_date=parse_api_time(data.get("since_date")),
            entity_types=tuple(types) if types else None,
            account=data.get("account"),
        )


@dataclass(frozen=True)
class SyncOptions:
    force_refresh: bool = False
    incremental_only: bool = False
    nuke: bool = False
    backup_path: str | None = None  # nuke: the backup file its preview announced

    def __post_init__(self) -> None:
        if self.nuke and (self.force_refresh or self.incremental_only):
            raise UsageError("nuke already resyncs everything: drop force / incremental-only")
        if self.force_refresh and self.incremental_only:
            raise UsageError("force and incremental-only contradict each other: pick one")
        if self.backup_path is not None and not self.nuke:
            raise UsageError("a backup path is only for a nuke")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncOptions:
        keys = ("force_refresh", "incremental_only", "nuke")
        flags = {k: bool(data.get(k, False)) for k in keys}
        return cls(**flags, backup_path=data.get("backup_path"))


@dataclass(frozen=True)
class SyncRequest:
    """One call of ``execute_sync``: what a queued run will do."""

    phases: tuple[SyncPhase, ...] = DEFAULT_PHASES
    scope: SyncScope = field(default_factory=SyncScope)
    options: SyncOptions = field(default_factory=SyncOptions)
    trigger: SyncTrigger = SyncTrigger.CLI

    def __post_init__(self) -> None:
        phases = SyncPhase.ordered(tuple(SyncPhase(p) for p in self.phases))
        if self.options.incremental_only:
            phases = tuple(p for p in phases if p not in (SyncPhase.PRODUCTS, SyncPhase.FEATURES))
        if self.scope.entity_types is not None:
            wanted = {ENTITY_PHASES[e] for e in self.scope.entity_types}
            phases = tuple(p for p in phases if p in wanted)
            if not phases and not self.options.nuke:
                raise UsageError(
                    "leaves no phase to run: the phases asked for refresh none of these",
                    param="entity_types",
                )
        if self.options.nuke:  # it brings back all it deleted, bugs included
            phases = SyncPhase.ordered((*phases, *DEFAULT_PHASES, SyncPhase.BUGS))
        if not phases:
            raise UsageError("a sync needs at least one phase")
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "trigger", SyncTrigger(self.trigger))

    def covers(self, other: SyncRequest) -> bool:
        """True when a run of ``self`` gives ``other`` everything it asked for."""
        if self.options.nuke or other.options.nuke:
            return (
                self.options == other.options
                and self.scope == other.scope
                and set(other.phases) <= set(self.phases)
            )
        return (
            set(other.phases) <= set(self.phases)
            and self.scope.covers(other.scope)
            and (self.options.force_refresh or not other.options.force_refresh)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": [p.value for p in self.phases],
            "scope": self.scope.to_dict(),
            "options": self.options.to_dict(),
            "trigger": self.trigger.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncRequest:
        return cls(
            phases=tuple(SyncPhase(p) for p in data["phases"]),
            scope=SyncScope.from_dict(data.get("scope") or {}),
            options=SyncOptions.from_dict(data.get("options") or {}),
            trigger=SyncTrigger(data.get("trigger", "cli")),
        )


@dataclass
class SyncProgress:
    """Live progress of a run, written to its ``sync_events`` row while it runs."""

    phase: str | None = None
    products_done: int = 0
    products_total: int = 0
    pages: int = 0
    tests_found: int = 0
    bugs_refreshed: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SyncProgress:
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


RESULT_COUNTS = (
    "products_synced",
    "features_refreshed",
    "tests_discovered",
    "tests_updated",
    "tests_removed",
    "bugs_refreshed",
)


@dataclass
class SyncResult:
    """What a run did. ``duration_seconds`` is always set, also for failed runs."""

    run_id: str
    status: SyncStatus
    trigger: SyncTrigger = SyncTrigger.CLI
    phases_completed: list[SyncPhase] = field(default_factory=list)
    products_synced: int = 0
    features_refreshed: int = 0
    tests_discovered: int = 0
    tests_updated: int = 0
    tests_removed: int = 0
    bugs_refreshed: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    backup_path: str | None = None
    per_product: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == SyncStatus.SUCCEEDED

    def counts(self) -> dict[str, int]:
        """The run's counters by name: one list for every summary and the run record."""
        return {name: getattr(self, name) for name in RESULT_COUNTS}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the CLI's ``--json`` output and MCP structured content."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "trigger": self.trigger.value,
            "phases_completed": [p.value for p in self.phases_completed],
            **self.counts(),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
            "duration_seconds": round(self.duration_seconds, 3),
            "started_at": to_iso(self.started_at),
            "finished_at": to_iso(self.finished_at),
            "backup_path": self.backup_path,
            "per_product": self.per_product,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncResult:
        return cls(
            run_id=data["run_id"],
            status=SyncStatus(data["status"]),
            trigger=SyncTrigger(data.get("trigger", "cli")),
            phases_completed=[SyncPhase(p) for p in data.get("phases_completed", [])],
            products_synced=data.get("products_synced", 0),
            features_refreshed=data.get("features_refreshed", 0),
            tests_discovered=data.get("tests_discovered", 0),
            tests_updated=data.get("tests_updated", 0),
            tests_removed=data.get("tests_removed", 0),
            bugs_refreshed=data.get("bugs_refreshed", 0),
            warnings=list(data.get("warnings", [])),
            errors=list(data.get("errors", [])),
            duration_seconds=float(data.get("duration_seconds", 0.0)),
            started_at=parse_api_time(data.get("started_at")),
            finished_at=parse_api_time(data.get("finished_at")),
            backup_path=data.get("backup_path"),
            per_product=dict(data.get("per_product", {})),
        )
