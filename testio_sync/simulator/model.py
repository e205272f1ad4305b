"""The simulator's entities and the rules that turn the clock into statuses.

Times are integer seconds since the epoch (UTC): they compare and sort fast
and carry no offset, which is only chosen when a payload is rendered. A test's
status and a bug's status are pure functions of the simulated ``now`` and the
timestamps planned when the row was created, so the same clock always gives the
same statuses and statuses only move forward when the clock does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR = 3600
DAY = 24 * HOUR
AUTO_ACCEPT_AFTER = 10 * DAY  # forwarded bugs nobody reviewed are accepted by the platform


@dataclass(slots=True)
class Section:
    id: int
    name: str
    template_total: int
    template_count: int


@dataclass(slots=True)
class Environment:
    """A test environment; its credentials are served so the client can prove it drops them."""

    id: int
    title: str
    url: str
    username: str
    password: str
    access_type: str


@dataclass(slots=True)
class Product:
    id: int
    name: str
    description: str | None
    type: str
    default_section: Section
    sections: list[Section]
    # False reproduces the quirk where sections appear only in sections_with_default.
    lists_sections: bool
    connection: dict[str, object] | None
    remote_device_testing: bool
    environments: list[Environment]

    @property
    def sectioned(self) -> bool:
        return bool(self.sections)

    def section(self, section_id: int) -> Section | None:
        """The product's section with that id, the default section included."""
        if section_id == self.default_section.id:
            return self.default_section
        return next((s for s in self.sections if s.id == section_id), None)


@dataclass(slots=True)
class Feature:
    id: int
    product_id: int
    section_ids: list[int]
    text_key: int
    revision: int
    has_description: bool
    user_stories: list[tuple[int, str]]


@dataclass(slots=True)
class FeatureInTest:
    """A test feature: the link of a feature into one test, with its own id."""

    id: int
    feature_id: int
    enable_default: bool | None
    enable_content: bool | None
    enable_visual: bool | None


@dataclass(slots=True)
class ExploratoryTest:
    id: int
    product_id: int
    section_id: int
    text_key: int
    testing_type: str | None
    created_at: int
    waiting_at: int
    start_at: int
    end_at: int
    archive_at: int
    cancel_at: int | None  # set for tests that are cancelled before they start
    finalized: bool  # ended as customer_finalized instead of locked -> archived
    review_failed: bool
    created_by: str
    submitted_by: str | None
    environment_id: int
    requirement_index: int
    report_language: str
    bug_rate_per_hour: float
    features: list[FeatureInTest] = field(default_factory=list)
    status: str = "initialized"

    def status_at(self, now: int) -> str:
        """The status at ``now``: initialized -> waiting -> running -> locked -> archived."""
        if self.cancel_at is not None and now >= self.cancel_at:
            return "cancelled"
        if now < self.waiting_at:
            return "initialized"
        if now < self.start_at:
            return "waiting"
        if now < self.end_at:
            return "running"
        if self.finalized:
            return "customer_finalized"
        if now < self.archive_at:
            return "locked"
        return "archived"

    def can_have_bugs(self) -> bool:
        """Bugs exist only on tests that started (cancellations happen before the start)."""
        return self.cancel_at is None

    def review_status(self) -> str:
        if self.status == "locked":
            return "review_initialized"
        if self.status in ("archived", "customer_finalized"):
            return "review_failed" if self.review_failed else "review_successful"
        return "not_finalized"


@dataclass(slots=True)
class Bug:
    id: int
    test_id: int
    test_feature_id: int | None
    feature_id: int | None
    text_key: int
    severity: str
    reported_at: int
    # The planned outcome ("accepted", "rejected" or "auto") and when it happens.
    resolution: str
    resolve_at: int
    reject_reason: str | None
    author: str
    reviewer: str
    known: bool
    device_index: int
    device_count: int
    has_tester_comment: bool
    status: str = "forwarded"
    auto_accepted: bool = False

    def status_at(self, now: int) -> tuple[str, bool]:
        """``(status, auto_accepted)`` at ``now``."""
        if now < self.resolve_at:
            return "forwarded", False
        if self.resolution == "auto":
            return "accepted", True
        return self.resolution, False

    @property
    def bucket(self) -> str:
        """The truth bucket: forwarded, accepted, auto_accepted or rejected."""
        return "auto_accepted" if self.auto_accepted else self.status
