"""Settings from the environment; the only module that reads ``os.environ``.

Every entry point builds one ``Settings`` (``Settings.from_env()``) and passes it
down, so tests and the demo can point a whole process at another data directory.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import orjson

from testio_sync.errors import ConfigError

PRODUCTION_BASE_URL = "https://api.test.io/customer/v2"


class Secret:
    """A value that never shows itself: ``str``, ``repr``, ``%s``, f-strings and ``format``
    all print ``***``; only ``reveal()`` gives it. Not a ``str`` subclass, so neither
    concatenation nor ``json.dumps`` can leak it by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return format("***", spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0, kind: type = int
) -> Any:
    """``name`` as an ``int`` (whole numbers) or ``float`` (seconds), at least ``minimum``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw}")
    return value


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what an HTTP header value may carry as is


def _token(env: Mapping[str, str]) -> Secret | None:
    """The API token; one that an HTTP header cannot carry is a setting error."""
    raw = env.get("TESTIO_CUSTOMER_API_TOKEN", "").strip()
    if not raw:
        return None
    if not _HEADER_SAFE.fullmatch(raw):
        raise ConfigError(
            "TESTIO_CUSTOMER_API_TOKEN holds a space, a control or a non-ASCII character; "
            "copy the token again (it is plain ASCII)"
        )
    return Secret(raw)


MIN_SERVER_TOKEN_CHARS = 16


def check_server_token(value: str, source: str) -> Secret:
    """A bearer token for the HTTP server, refused when short or not header-safe.

    The message names where the token came from, never the token itself.
    """
    if not _HEADER_SAFE.fullmatch(value):
        raise ConfigError(f"{source} holds a space, a control or a non-ASCII character")
    if len(value) < MIN_SERVER_TOKEN_CHARS:
        raise ConfigError(
            f"{source} is shorter than {MIN_SERVER_TOKEN_CHARS} characters; "
            "use a long random one (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return Secret(value)


def _server_tokens(env: Mapping[str, str]) -> tuple[Secret, ...]:
    """The comma-separated bearer tokens the HTTP server accepts."""
    parts = [p.strip() for p in env.get("TESTIO_SYNC_SERVER_TOKENS", "").split(",")]
    return tuple(
        check_server_token(part, f"TESTIO_SYNC_SERVER_TOKENS (token {n})")
        for n, part in enumerate((p for p in parts if p), 1)
    )


_PORT = re.compile(r":(\d+|\*)$")


def _addresses(env: Mapping[str, str], name: str, *, origins: bool) -> tuple[str, ...]:
    """Allowed ``Host`` (``name[:port]``) or ``Origin`` (``scheme://name[:port]``) values.

    An entry without a port also allows it with any port (``name`` and ``name:*``).
    """
    out: list[str] = []
    for entry in env.get(name, "").replace(",", " ").split():
        rest = entry.split("://", 1)[1] if origins and "://" in entry else entry
        scheme_ok = not origins or entry.startswith(("http://", "https://"))
        if not scheme_ok or not rest or "/" in rest or "://" in rest:
            shape = "http(s)://name[:port]" if origins else "name[:port] (no scheme, no path)"
            raise ConfigError(f"{name}: {entry!r} is not {shape}")
        out += [entry] if _PORT.search(entry) else [entry, f"{entry}:*"]
    return tuple(dict.fromkeys(out))


QUEUE_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgres",
    "postgres": "postgres",
}


def redact_url(url: str) -> str:
    """``url`` with its password shown as ``***``: the only form a URL takes in a message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def _url_from_env(env: Mapping[str, str] | None, name: str) -> tuple[str, SplitResult] | None:
    """The URL in variable ``name`` and its parts, or None when unset.

    Raises:
        ConfigError: the value does not parse as a URL (its password hidden).
    """
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        raise ConfigError(f"{name} is not a URL: {redact_url(raw)}") from None
    return raw, parts


def queue_url_from_env(env: Mapping[str, str] | None = None) -> Secret | None:
    """``TESTIO_SYNC_QUEUE_URL``: unset is the SQLite queue; else a Redis or PostgreSQL URL.

    Raises:
        ConfigError: not a URL of either kind (the message hides its password).
    """
    found = _url_from_env(env, "TESTIO_SYNC_QUEUE_URL")
    if found is None:
        return None
    raw, parts = found
    if parts.scheme not in QUEUE_SCHEMES or not parts.hostname:
        raise ConfigError(
            f"TESTIO_SYNC_QUEUE_URL must be redis://HOST[:PORT][/DB] or "
            f"postgresql://USER@HOST[:PORT]/DB, got {redact_url(raw)}"
        )
    return Secret(raw)


DATABASE_SCHEMES = ("postgresql", "postgres")


def database_url_from_env(env: Mapping[str, str] | None = None) -> Secret | None:
    """``TESTIO_SYNC_DATABASE_URL``: unset is the SQLite ``cache.db``; else a PostgreSQL URL.

    Raises:
        ConfigError: not a PostgreSQL URL (the message hides its password).
    """
    found = _url_from_env(env, "TESTIO_SYNC_DATABASE_URL")
    if found is None:
        return None
    raw, parts = found
    if parts.scheme not in DATABASE_SCHEMES or not parts.path.strip("/"):
        raise ConfigError(
            "TESTIO_SYNC_DATABASE_URL must be postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, "
            f"got {redact_url(raw)}"
        )
    return Secret(raw)


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """``name`` as a fraction between 0 and 1."""
    value = float(_number(env, name, default, kind=float))
    if not value <= 1:  # also refuses nan
        raise ConfigError(f"{name} must be a fraction between 0 and 1, got {env.get(name)!r}")
    return value


def parse_product_ids(raw: str, *, source: str = "product ids") -> tuple[int, ...]:
    """Parse ``"598"``, ``"598,599"`` or ``"598 599"`` into positive ids.

    Raises:
        ConfigError: for anything that is not a positive whole number.
    """
    ids: list[int] = []
    for part in raw.replace(",", " ").split():
        if not part.isdigit() or int(part) <= 0:
            raise ConfigError(f"{source}: {part!r} is not a positive product id")
        if int(part) not in ids:
            ids.append(int(part))
    return tuple(ids)


@dataclass(frozen=True)
class Settings:
    """Where the data lives, how to reach the API, and the sync's limits."""

    home: Path = field(default_factory=lambda: Path.home() / ".testio-sync")
    api_base_url: str = PRODUCTION_BASE_URL
    api_token: Secret | None = field(default=None, repr=False)
    max_concurrent_requests: int = 10
    http_timeout_s: float = 30.0
    cache_ttl_s: int = 3600
    refresh_interval_s: int = 3600
    product_ids: tuple[int, ...] | None = None
    lock_timeout_s: float = 30.0
    mcp_sync_wait_s: float = 45.0
    max_retries: int = 5
    retry_max_wait_s: float = 60.0
    max_removal_share: float = 0.5  # a run removing more of the stored data waits for --force
    # Who may use ``serve --transport http`` (see ``mcp_server.http_auth``).
    server_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    server_tokens_file: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    queue_url: Secret | None = field(default=None, repr=False)  # None: SQLite queue.db
    database_url: Secret | None = field(default=None, repr=False)  # None: SQLite cache.db

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``TESTIO_*`` variables; keyword overrides win over the environment.

        Raises:
            ConfigError: a variable holds an unusable value.
        """
        env = os.environ if env is None else env
        home = home_from_env(env)
        ids_raw = env.get("TESTIO_PRODUCT_IDS", "").strip()
        settings = cls(
            home=home,
            api_base_url=(env.get("TESTIO_CUSTOMER_API_BASE_URL") or PRODUCTION_BASE_URL).rstrip(
                "/"
            ),
            api_token=_token(env),
            max_concurrent_requests=_number(env, "TESTIO_MAX_CONCURRENT_REQUESTS", 10, minimum=1),
            http_timeout_s=_number(
                env, "TESTIO_HTTP_TIMEOUT_SECONDS", 30.0, minimum=0.1, kind=float
            ),
            cache_ttl_s=_number(env, "TESTIO_CACHE_TTL_SECONDS", 3600),
            refresh_interval_s=_number(env, "TESTIO_REFRESH_INTERVAL_SECONDS", 3600),
            product_ids=(
                parse_product_ids(ids_raw, source="TESTIO_PRODUCT_IDS") if ids_raw else None
            ),
            lock_timeout_s=_number(
                env, "TESTIO_SYNC_LOCK_TIMEOUT_SECONDS", 30.0, minimum=0, kind=float
            ),
            mcp_sync_wait_s=_number(
                env, "TESTIO_MCP_SYNC_WAIT_SECONDS", 45.0, minimum=0.1, kind=float
            ),
            max_retries=_number(env, "TESTIO_MAX_RETRIES", 5),
            retry_max_wait_s=_number(
                env, "TESTIO_RETRY_MAX_WAIT_SECONDS", 60.0, minimum=0, kind=float
            ),
            max_removal_share=_share(env, "TESTIO_MAX_REMOVAL_SHARE", 0.5),
            server_tokens=_server_tokens(env),
            server_tokens_file=(
                Path(tokens_file).expanduser()
                if (tokens_file := env.get("TESTIO_SYNC_SERVER_TOKENS_FILE", "").strip())
                else None
            ),
            allowed_hosts=_addresses(env, "TESTIO_SYNC_ALLOWED_HOSTS", origins=False),
            allowed_origins=_addresses(env, "TESTIO_SYNC_ALLOWED_ORIGINS", origins=True),
            queue_url=queue_url_from_env(env),
            database_url=database_url_from_env(env),
        )
        return replace(settings, **overrides) if overrides else settings

    def to_env(self) -> dict[str, str]:
        """These settings as ``TESTIO_*`` variables, for a child process (a worker)."""
        env = {
            "TESTIO_SYNC_HOME": str(self.home),
            "TESTIO_CUSTOMER_API_BASE_URL": self.api_base_url,
            "TESTIO_MAX_CONCURRENT_REQUESTS": str(self.max_concurrent_requests),
            "TESTIO_HTTP_TIMEOUT_SECONDS": repr(self.http_timeout_s),
            "TESTIO_CACHE_TTL_SECONDS": str(self.cache_ttl_s),
            "TESTIO_REFRESH_INTERVAL_SECONDS": str(self.refresh_interval_s),
            "TESTIO_SYNC_LOCK_TIMEOUT_SECONDS": repr(self.lock_timeout_s),
            "TESTIO_MCP_SYNC_WAIT_SECONDS": repr(self.mcp_sync_wait_s),
            "TESTIO_MAX_RETRIES": str(self.max_retries),
            "TESTIO_RETRY_MAX_WAIT_SECONDS": repr(self.retry_max_wait_s),
            "TESTIO_PRODUCT_IDS": ",".join(map(str, self.product_ids or ())),
            "TESTIO_MAX_REMOVAL_SHARE": repr(self.max_removal_share),
        }
        if self.api_token:
            env["TESTIO_CUSTOMER_API_TOKEN"] = self.api_token.reveal()
        env["TESTIO_SYNC_QUEUE_URL"] = self.queue_url.reveal() if self.queue_url else ""
        env["TESTIO_SYNC_DATABASE_URL"] = self.database_url.reveal() if self.database_url else ""
        return env

    @property
    def db_path(self) -> Path:
        return self.home / "cache.db"

    @property
    def store_label(self) -> str:
        """Where the mirror is, for people: the file, or the server's URL without its password."""
        if self.database_url is None:
            return str(self.db_path)
        return redact_url(self.database_url.reveal())

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.db"

    @property
    def lock_path(self) -> Path:
        return self.home / "sync.lock"

    @property
    def worker_lock_path(self) -> Path:
        return self.home / "worker.lock"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    def require_token(self) -> Secret:
        """The API token, or a ConfigError that says how to set it."""
        if not self.api_token:
            raise ConfigError(
                "No API token: set TESTIO_CUSTOMER_API_TOKEN "
                "(and TESTIO_CUSTOMER_API_BASE_URL for a non-production API)."
            )
        return self.api_token

    def ensure_home(self) -> Path:
        """Create the data directory private (0700) and return it.

        Raises:
            ConfigError: the directory cannot be created or written (one line, naming
                TESTIO_SYNC_HOME).
        """
        problem = None
        try:
            if self.home.exists() and not self.home.is_dir():
                problem = "it is a file, not a directory"
            else:
                self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.backups_dir.mkdir(mode=0o700, exist_ok=True)
                os.chmod(self.home, 0o700)
                if not os.access(self.home, os.W_OK):
                    problem = "it is not writable"
        except OSError as exc:
            problem = (exc.strerror or type(exc).__name__).lower()
        if problem:
            raise ConfigError(f"TESTIO_SYNC_HOME {self.home} cannot hold the mirror: {problem}")
        return self.home


def touch_private(path: Path) -> Path:
    """Create ``path`` as an empty 0600 file if absent, and make it 0600 if present.

    SQLite and the lock library create files with the process umask; creating
    them first keeps the data directory private whatever the umask is. An
    existing file is never opened here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
    else:
        os.close(fd)
    return path


def home_from_env(env: Mapping[str, str] | None = None) -> Path:
    """The data directory alone, for code that must not fail on other settings."""
    env = os.environ if env is None else env
    return Path(env.get("TESTIO_SYNC_HOME") or Path.home() / ".testio-sync").expanduser()


# What a test keeps of its environment: the rest holds the URL, login and password
# of the customer's system under test.
_ENVIRONMENT_KEY = "test_environment"
_ENVIRONMENT_KEPT = ("id", "title")
_ENVIRONMENT_NEEDLE = b'"test_environment"'  # how orjson writes the key, always


def scrub_environments(value: Any) -> Any:
    """``value`` with every ``test_environment`` keeping only ``id`` and ``title``.

    The one rule for those credentials, applied where API answers arrive (the
    client) and again where rows are written (the store): none of it may reach a
    result, a log or the database file. An unexpected shape keeps nothing.

    A test, or a list of tests, holds its environment at its top: one fast
    serialisation counts every occurrence of the key, and when all of them are
    at the top only those are rebuilt (the rest is shared with ``value``; an item
    already clean is returned as is). Anything else is copied through whole.
    """
    items = value if isinstance(value, list) else [value]
    try:
        found = orjson.dumps(value).count(_ENVIRONMENT_NEEDLE)
    except (TypeError, orjson.JSONEncodeError):  # not plain JSON data: the full walk
        found = -1
    at_top = sum(1 for item in items if isinstance(item, dict) and _ENVIRONMENT_KEY in item)
    if found != at_top:
        return _scrub_everywhere(value)
    scrubbed = [_scrub_top(item) for item in items]
    if not isinstance(value, list):
        return scrubbed[0]
    return value if all(a is b for a, b in zip(scrubbed, value, strict=True)) else scrubbed


def _kept(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: item[k] for k in _ENVIRONMENT_KEPT if k in item}
    return None


def _scrub_top(item: Any) -> Any:
    if not isinstance(item, dict) or _ENVIRONMENT_KEY not in item:
        return item
    environment = item[_ENVIRONMENT_KEY]
    if environment is None or (
        isinstance(environment, dict) and environment.keys() <= set(_ENVIRONMENT_KEPT)
    ):
        return item
    return {**item, _ENVIRONMENT_KEY: _kept(environment)}


def _scrub_everywhere(value: Any) -> Any:
    """A copy of ``value`` scrubbed at any depth."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == _ENVIRONMENT_KEY and isinstance(item, dict):
                out[key] = _kept(item)
            elif key == _ENVIRONMENT_KEY and item is not None:
                out[key] = None
            else:
                out[key] = _scrub_everywhere(item)
        return out
    if isinstance(value, list):
        return [_scrub_everywhere(item) for item in value]
    return value
