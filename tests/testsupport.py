"""Constants and builders shared by test modules (imported as ``testsupport``)."""

from __future__ import annotations

from pathlib import Path

from testio_sync.settings import Secret, Settings

TOKEN = "test-token-0123456789"


def make_settings(home: Path, base_url: str, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "home": home,
        "api_base_url": base_url,
        "api_token": Secret(TOKEN),
        "http_timeout_s": 5.0,
        "lock_timeout_s": 5.0,
        "retry_max_wait_s": 2.0,
    }
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]
