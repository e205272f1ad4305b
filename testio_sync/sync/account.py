"""Which account a mirror holds, so one mirror never mixes the data of two.

An account is the API base URL plus a fingerprint of the token: an HMAC-SHA256
keyed by a random key of this mirror (``account_key`` in the store's metadata),
never the token. The mirror records its account after the first run the API
accepted; from then on a request for another account is refused, whoever would
run it: the caller before enqueuing, the worker (or the in-process job) before
it touches the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from testio_sync.dates import utc_now
from testio_sync.errors import ConfigError
from testio_sync.settings import Settings
from testio_sync.store import queries, save

ACCOUNT_KEY = "account_key"
ACCOUNT = "account"


class AccountMismatchError(ConfigError):
    """A sync for another account than the mirror's, or than the worker's."""


@dataclass(frozen=True)
class Account:
    base_url: str
    token_fingerprint: str

    def to_json(self) -> str:
        return json.dumps({"base_url": self.base_url, "token": self.token_fingerprint})

    @classmethod
    def from_json(cls, text: str) -> Account:
        data = json.loads(text)
        return cls(base_url=str(data["base_url"]), token_fingerprint=str(data["token"]))

    def describe(self) -> str:
        return f"{self.base_url} (token {self.token_fingerprint[:8]})"


def account_of(settings: Settings) -> Account | None:
    """The account ``settings`` sync; None without a token (nothing to compare)."""
    if not settings.api_token:
        return None
    key = queries.get_metadata(ACCOUNT_KEY) or save.ensure_metadata(  # a write only once
        ACCOUNT_KEY, secrets.token_hex(32), now=utc_now()
    )
    digest = hmac.new(
        bytes.fromhex(key), settings.api_token.reveal().encode(), hashlib.sha256
    ).hexdigest()
    return Account(base_url=settings.api_base_url, token_fingerprint=digest)


def recorded_account() -> Account | None:
    """The account this mirror holds, once a run the API accepted recorded it."""
    text = queries.get_metadata(ACCOUNT)
    return Account.from_json(text) if text else None


def require_mirror_account(account: Account | None) -> None:
    """Refuse ``account`` when the mirror holds another one.

    Raises:
        AccountMismatchError: one line saying whose data the mirror holds.
    """
    held = recorded_account()
    if account is None or held is None or held == account:
        return
    raise AccountMismatchError(
        f"This mirror holds the data of {held.describe()}, not of {account.describe()}; "
        "use another TESTIO_SYNC_HOME for another account."
    )


def require_same_account(requested: Account | None, runner: Account | None) -> None:
    """Refuse a run asked for by another account than the one that would run it.

    Raises:
        AccountMismatchError: the worker's settings differ from the caller's.
    """
    if requested is None or runner is None or requested == runner:
        return
    raise AccountMismatchError(
        f"The worker syncs {runner.describe()}, not {requested.describe()} as asked; "
        "give both the same TESTIO_CUSTOMER_API_BASE_URL and TESTIO_CUSTOMER_API_TOKEN."
    )


def request_account(settings: Settings, *, check_mirror: bool = True) -> str | None:
    """The account of ``settings`` as a request carries it (``SyncScope.account``).

    Raises:
        AccountMismatchError: ``check_mirror`` and the mirror holds another account.
    """
    account = account_of(settings)
    if check_mirror:
        require_mirror_account(account)
    return account.to_json() if account else None


def check_run_account(requested: str | None, settings: Settings) -> Account | None:
    """Before a job touches the store: the requester's, runner's and mirror's accounts agree.

    Returns the runner's account, for ``remember_account`` once the run is done.
    """
    runner = account_of(settings)
    require_same_account(Account.from_json(requested) if requested else None, runner)
    require_mirror_account(runner)
    return runner


def remember_account(account: Account | None, *, accepted: bool) -> None:
    """Record the mirror's account (first writer wins) after a run the API ``accepted``."""
    if account is not None and accepted:
        save.ensure_metadata(ACCOUNT, account.to_json(), now=utc_now())
