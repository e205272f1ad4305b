"""Settings: read from TESTIO_* variables, and handed to a child process unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from testio_sync.errors import ConfigError
from testio_sync.settings import Secret, Settings


def test_settings_survive_the_trip_to_a_child_process_environment():
    settings = Settings(
        home=Path("/tmp/testio-home"),
        api_base_url="http://127.0.0.1:1/customer/v2",
        api_token=Secret("t0ken"),
        http_timeout_s=0.5,
        lock_timeout_s=1.5,
        mcp_sync_wait_s=2.25,
        max_retries=2,
        retry_max_wait_s=0.25,
        product_ids=(598,),
        refresh_interval_s=0,
        max_removal_share=0.25,
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_a_single_product_id_in_the_environment_is_a_filter_not_ignored():
    assert Settings.from_env({"TESTIO_PRODUCT_IDS": "598"}).product_ids == (598,)
    assert Settings.from_env({"TESTIO_PRODUCT_IDS": "598, 599"}).product_ids == (598, 599)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TESTIO_PRODUCT_IDS", "abc"),
        ("TESTIO_PRODUCT_IDS", "-3"),
        ("TESTIO_MAX_CONCURRENT_REQUESTS", "0"),
        ("TESTIO_HTTP_TIMEOUT_SECONDS", "soon"),
        ("TESTIO_CACHE_TTL_SECONDS", "1.5"),
        ("TESTIO_HTTP_TIMEOUT_SECONDS", "nan"),
        ("TESTIO_HTTP_TIMEOUT_SECONDS", "inf"),
        ("TESTIO_SYNC_LOCK_TIMEOUT_SECONDS", "NaN"),
        ("TESTIO_CUSTOMER_API_TOKEN", "tökén-123"),
        ("TESTIO_CUSTOMER_API_TOKEN", "abc def"),
        ("TESTIO_MAX_REMOVAL_SHARE", "1.5"),
        ("TESTIO_MAX_REMOVAL_SHARE", "nan"),
        ("TESTIO_MAX_REMOVAL_SHARE", "-0.1"),
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_token_never_shows_in_a_repr():
    settings = Settings(api_token=Secret("very-secret-token"))
    assert "very-secret-token" not in repr(settings)
    assert "very-secret-token" not in repr(settings.api_token)


def test_the_token_never_prints_by_accident():
    """``str``, ``%s``, f-strings and ``format`` show ``***``; only ``reveal()`` gives it."""
    token = Secret("very-secret-token")
    shown = [str(token), "%s" % token, f"{token}", f"{token!s}", f"{token}"]  # noqa: UP031
    shown += [format(token, ">20"), repr(token), str(Settings(api_token=token))]
    assert all("very-secret-token" not in text for text in shown), shown
    assert token.reveal() == "very-secret-token"
    with pytest.raises(TypeError):
        "Token " + token  # type: ignore[operator]


def test_the_queue_url_travels_to_a_worker_but_its_password_shows_nowhere():
    from testio_sync.settings import redact_url

    url = "redis://:hunter2-pw@127.0.0.1:6379/3"
    settings = Settings.from_env({"TESTIO_SYNC_QUEUE_URL": url})
    assert settings.queue_url is not None and settings.queue_url.reveal() == url
    assert "hunter2-pw" not in repr(settings) and "hunter2-pw" not in str(settings.queue_url)
    assert Settings.from_env(settings.to_env()).queue_url == settings.queue_url
    assert Settings.from_env({}).to_env()["TESTIO_SYNC_QUEUE_URL"] == ""  # a child gets SQLite
    assert redact_url(url) == "redis://:***@127.0.0.1:6379/3"
    assert redact_url("postgresql://me:p%40ss@db:5432/q") == "postgresql://me:***@db:5432/q"
    assert redact_url("redis://127.0.0.1/0") == "redis://127.0.0.1/0"
