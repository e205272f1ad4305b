"""Who may use the HTTP server: bearer tokens, and the Host and Origin headers it accepts.

The per-request check is the MCP SDK's own (``token_verifier`` plus ``AuthSettings``
on ``MCPServer``): every request to ``/mcp`` without a token this verifier knows gets
401 and no data. The verifier keeps only SHA-256 digests and compares a presented
token's digest in constant time against all of them, so neither the answer's timing
nor a log line says how close a guess came. Only the three addresses the SDK guards
against DNS rebinding (127.0.0.1, localhost, ::1) serve without tokens; any other
``--host``, even another 127.x address, refuses to start without them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from testio_sync.errors import ConfigError
from testio_sync.settings import Settings

logger = logging.getLogger("testio_sync.mcp")

LOOPBACK_DEFAULTS = ("127.0.0.1", "localhost", "::1")
# What the SDK allows on those addresses; repeated here only to add configured names.
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")

_DIGEST_LINE = re.compile(r"sha256:([0-9a-f]{64})")


def digest(token: str) -> bytes:
    """What the server keeps of a token and compares: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def hash_token(token: str) -> str:
    """The line a tokens file holds for ``token``: ``sha256:<64 hex digits>``."""
    return "sha256:" + digest(token).hex()


def read_token_file(path: Path) -> tuple[bytes, ...]:
    """The digests in a tokens file (one ``sha256:<hex>`` a line; blanks and ``#`` skipped).

    Raises:
        ConfigError: the file is unreadable, has a malformed line, or holds no digest.
    """
    name = f"TESTIO_SYNC_SERVER_TOKENS_FILE {path}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not text"
        raise ConfigError(f"{name} cannot be read: {reason.lower()}") from None
    digests: list[bytes] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _DIGEST_LINE.fullmatch(line.lower())
        if not match:
            raise ConfigError(
                f"{name}: line {number} is not sha256:<64 hex digits> "
                "(`testio-sync serve --hash-token` makes one)"
            )
        digests.append(bytes.fromhex(match[1]))
    if not digests:
        raise ConfigError(f"{name} holds no token line")
    return tuple(digests)


class StaticTokenVerifier:
    """The SDK's ``TokenVerifier`` for a fixed set of tokens, known by their digests."""

    def __init__(self, digests: tuple[bytes, ...]) -> None:
        self._digests = digests

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = digest(token)
        found = 0
        for known in self._digests:  # all of them, whatever matched: no early exit
            found |= hmac.compare_digest(presented, known)
        if not found:
            return None
        # The request state carries a label, not the token.
        return AccessToken(token="bearer", client_id="testio-sync-client", scopes=[])


@dataclass(frozen=True)
class HttpAccess:
    """How one HTTP server checks its requests."""

    verifier: StaticTokenVerifier | None
    security: TransportSecuritySettings | None  # None: the SDK's default for the address

    @property
    def auth(self) -> AuthSettings | None:
        """The SDK's switch for the bearer check; the issuer is unused with static tokens."""
        if self.verifier is None:
            return None
        return AuthSettings(issuer_url="http://localhost", resource_server_url=None)

    @property
    def run_options(self) -> dict[str, Any]:
        """``MCPServer.run`` options: stateless, so any instance answers any request.

        Answers stay event streams (not ``json_response``): that keeps ``sync_data``'s
        progress notifications, and each stream still ends with its own request.
        """
        return {"stateless_http": True, "transport_security": self.security}


def token_digests(settings: Settings) -> tuple[bytes, ...]:
    """The digests of every configured token: the variable's and the file's."""
    own = tuple(digest(t.reveal()) for t in settings.server_tokens)
    if settings.server_tokens_file is None:
        return own
    return own + read_token_file(settings.server_tokens_file)


def http_access(settings: Settings, host: str) -> HttpAccess:
    """The checks for a server on ``host``; configured tokens apply on every address.

    Raises:
        ConfigError: ``host`` is not a loopback default and no token is configured, or
            the tokens file or the allowed origins cannot be used.
    """
    digests = token_digests(settings)
    loopback = host in LOOPBACK_DEFAULTS
    if not digests and not loopback:
        raise ConfigError(
            f"serving on {host} needs authentication: set TESTIO_SYNC_SERVER_TOKENS or "
            f"TESTIO_SYNC_SERVER_TOKENS_FILE (only {', '.join(LOOPBACK_DEFAULTS)} "
            "serve without tokens)"
        )
    verifier = StaticTokenVerifier(digests) if digests else None
    if verifier:
        logger.info("every HTTP request needs one of %d bearer tokens", len(digests))
    hosts, origins = settings.allowed_hosts, settings.allowed_origins
    if not hosts and not origins:
        if not loopback:
            logger.warning(
                "Host and Origin headers are not checked on %s: "
                "set TESTIO_SYNC_ALLOWED_HOSTS to check them",
                host,
            )
        return HttpAccess(verifier, None)
    if loopback:
        hosts, origins = LOOPBACK_HOSTS + hosts, LOOPBACK_ORIGINS + origins
    elif not hosts:
        raise ConfigError(
            f"TESTIO_SYNC_ALLOWED_ORIGINS on {host} also needs TESTIO_SYNC_ALLOWED_HOSTS "
            "(the names clients reach this server by)"
        )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(hosts),
        allowed_origins=list(origins),
    )
    return HttpAccess(verifier, security)
