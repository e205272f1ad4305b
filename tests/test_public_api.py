"""The public surface is exactly ``__all__``, sorted, and every name resolves."""

import testio_sync


def test_all_is_sorted_and_every_name_resolves():
    names = testio_sync.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(testio_sync, name) is not None


def test_the_service_is_reachable_from_the_package():
    from testio_sync.service import SyncService

    assert testio_sync.SyncService is SyncService
