"""The public surface of ``testio_sync.api`` is exactly its ``__all__``."""

from __future__ import annotations

import testio_sync.api as api


def test_the_public_names_are_sorted_and_importable() -> None:
    """``__all__`` is sorted, and every name in it exists."""
    assert api.__all__ == sorted(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)


def test_the_sync_engine_finds_the_names_it_is_written_against() -> None:
    """The names other packages import stay public."""
    expected = {
        "ApiClient",
        "BrokenSlot",
        "BugBatchResult",
        "RetryPolicy",
        "TestPage",
        "fetch_bugs_batched",
        "iter_test_pages",
        "classify",
        "retry_after_seconds",
    }
    assert expected <= set(api.__all__)
