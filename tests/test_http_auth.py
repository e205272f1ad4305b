"""The HTTP server's access settings: tokens, allowed hosts and origins, and who needs what.

The served behaviour (401, 421, 403, stateless) is in ``test_mcp_http.py``; these are
the rules behind it, read from the variables as a real process reads them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from testio_sync.errors import ConfigError
from testio_sync.mcp_server.http_auth import http_access
from testio_sync.settings import Secret, Settings

TOKEN = "t" * 20
OTHER = "o" * 20


def settings(**env: str) -> Settings:
    return Settings.from_env({"TESTIO_SYNC_HOME": "/tmp/testio-http-auth", **env})


def test_server_tokens_are_secrets_split_on_commas_and_never_in_a_repr() -> None:
    s = settings(TESTIO_SYNC_SERVER_TOKENS=f" {TOKEN} ,, {OTHER}")
    assert s.server_tokens == (Secret(TOKEN), Secret(OTHER))
    assert TOKEN not in repr(s) and TOKEN not in str(s.server_tokens)
    assert "TESTIO_SYNC_SERVER_TOKENS" not in s.to_env()  # a worker does not need them


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{TOKEN},short", "TESTIO_SYNC_SERVER_TOKENS (token 2) is shorter than 16 characters"),
        ("with a space in it ok", "TESTIO_SYNC_SERVER_TOKENS (token 1) holds a space"),
    ],
)
def test_a_weak_or_unsendable_token_is_refused_without_showing_it(value: str, message: str):
    with pytest.raises(ConfigError) as caught:
        settings(TESTIO_SYNC_SERVER_TOKENS=value)
    assert str(caught.value).startswith(message)
    assert "short" not in str(caught.value).replace("shorter", "")
    assert "space in it" not in str(caught.value)


def test_allowed_names_without_a_port_allow_any_port() -> None:
    s = settings(
        TESTIO_SYNC_ALLOWED_HOSTS="mcp.example.com, 10.0.0.5:8080 [::1]",
        TESTIO_SYNC_ALLOWED_ORIGINS="https://team.example,http://x.example:*",
    )
    assert s.allowed_hosts == (
        "mcp.example.com",
        "mcp.example.com:*",
        "10.0.0.5:8080",
        "[::1]",
        "[::1]:*",
    )
    assert s.allowed_origins == (
        "https://team.example",
        "https://team.example:*",
        "http://x.example:*",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TESTIO_SYNC_ALLOWED_HOSTS", "https://mcp.example.com"),
        ("TESTIO_SYNC_ALLOWED_HOSTS", "mcp.example.com/mcp"),
        ("TESTIO_SYNC_ALLOWED_ORIGINS", "team.example"),
        ("TESTIO_SYNC_ALLOWED_ORIGINS", "https://team.example/"),
    ],
)
def test_a_url_where_a_name_belongs_is_refused_with_the_variable_named(name: str, value: str):
    with pytest.raises(ConfigError, match=f"^{name}: '{value}' is not "):
        settings(**{name: value})


def test_the_loopback_default_without_settings_keeps_the_sdk_defaults() -> None:
    access = http_access(settings(), "127.0.0.1")
    assert access.verifier is None and access.security is None and access.auth is None
    assert access.run_options == {"stateless_http": True, "transport_security": None}


def test_configured_tokens_apply_on_the_loopback_default_too() -> None:
    access = http_access(settings(TESTIO_SYNC_SERVER_TOKENS=TOKEN), "localhost")
    assert access.verifier is not None and access.auth is not None


def test_configured_names_add_to_the_loopback_ones() -> None:
    access = http_access(settings(TESTIO_SYNC_ALLOWED_HOSTS="mcp.example.com"), "::1")
    assert access.security is not None
    assert access.security.allowed_hosts == [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        "mcp.example.com",
        "mcp.example.com:*",
    ]


def test_origins_without_hosts_on_a_network_address_are_refused() -> None:
    s = settings(TESTIO_SYNC_SERVER_TOKENS=TOKEN, TESTIO_SYNC_ALLOWED_ORIGINS="https://a.example")
    with pytest.raises(ConfigError, match="also needs TESTIO_SYNC_ALLOWED_HOSTS"):
        http_access(s, "0.0.0.0")


def test_the_verifier_knows_exactly_the_configured_tokens(tmp_path: Path) -> None:
    """The variable's token and the file's digest are accepted; near misses are not."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"\n# team\nSHA256:{hashlib.sha256(OTHER.encode()).hexdigest().upper()}\n")
    s = settings(TESTIO_SYNC_SERVER_TOKENS=TOKEN, TESTIO_SYNC_SERVER_TOKENS_FILE=str(tokens))
    verifier = http_access(s, "10.1.2.3").verifier
    assert verifier is not None

    def verdict(token: str) -> bool:
        return anyio.run(verifier.verify_token, token) is not None

    assert verdict(TOKEN) and verdict(OTHER)
    assert not any(verdict(t) for t in ("", TOKEN[:-1], TOKEN + "t", OTHER.upper()))
    granted = anyio.run(verifier.verify_token, TOKEN)
    assert granted is not None and TOKEN not in granted.model_dump_json()
