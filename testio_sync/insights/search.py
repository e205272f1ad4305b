"""Full-text search over products, features, tests and bugs, ranked, with snippets.

The request is parsed here, the same for every store; a backend turns it into
its own query language (``SqliteSearch``: FTS5 over ``store.search_index``;
``PostgresSearch``: a ``tsquery`` over the ``words`` column, built by
``insights.tsquery`` from the same ``Terms``). The ``simple`` mode never lets user
text reach the query language unquoted, so it cannot fail on syntax; ``raw`` takes
FTS5 syntax on both stores and reports its errors on one line.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal, Protocol

from testio_sync.dates import to_iso
from testio_sync.errors import UsageError
from testio_sync.insights import tsquery
from testio_sync.insights.filters import _day_text, parse_day
from testio_sync.insights.sql_dialect import analytics_reads
from testio_sync.store import backend, queries, search_index
from testio_sync.store.models import database
from testio_sync.store.queries import store_call

ENTITIES = search_index.ENTITIES
Mode = Literal["simple", "raw"]
MODES = ("simple", "raw")
MAX_LIMIT = 100
MARK = "**"  # around matched words in snippets (``mark_terminal`` styles them)
_OPEN, _CLOSE = "\x02", "\x03"  # the backend's markers: never in stored text
_PHRASE = re.compile(r'"([^"]*)"?|(\S+)')


@dataclass(frozen=True)
class Terms:
    """The words of a simple query: every phrase must match; the last may be a prefix."""

    phrases: tuple[tuple[str, ...], ...]
    prefix_last: bool


def parse_simple(text: str) -> Terms:
    """Quotes make a phrase, other words stand alone; punctuation and operators are words.

    A word with inner punctuation (``e-mail``) is a phrase of its parts. The last
    word, unquoted, also matches as a prefix (``check`` finds ``checkout``).

    Raises:
        UsageError: no word in the text.
    """
    phrases: list[tuple[str, ...]] = []
    prefix_last = False
    for quoted, bare in _PHRASE.findall(text):
        words = tuple(re.findall(r"\w+", quoted or bare))
        if words:
            phrases.append(words)
            prefix_last = bool(bare)
    if not phrases:
        raise UsageError("query: give at least one word to search for")
    return Terms(tuple(phrases), prefix_last)


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: what to match, where, and which page."""

    query: str
    mode: Mode = "simple"
    entities: tuple[str, ...] = ENTITIES
    product_ids: tuple[int, ...] | None = None
    start_date: date | None = None
    end_date: date | None = None
    limit: int = 20
    offset: int = 0
    terms: Terms | None = field(default=None, compare=False)

    @classmethod
    def parse(
        cls,
        query: str,
        *,
        mode: str = "simple",
        entities: Sequence[str] | None = None,
        product_ids: Sequence[int] | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> SearchRequest:
        """Validate tool or CLI arguments.

        Raises:
            UsageError: an empty query, unknown mode or entity, bad id, date or page.
        """
        if mode not in MODES:
            raise UsageError(f"mode: use simple or raw, not {mode!r}")
        if not query or not query.strip():
            raise UsageError("query: give at least one word to search for")
        kinds = tuple(sorted(set(entities))) if entities is not None else ENTITIES
        unknown = sorted(set(kinds) - set(ENTITIES))
        if unknown or not kinds:
            raise UsageError(
                f"entities: unknown {', '.join(unknown) or '(empty list)'}; "
                f"use {', '.join(ENTITIES)}"
            )
        ids = tuple(sorted(set(product_ids))) if product_ids is not None else None
        if ids is not None and (not ids or any(i <= 0 for i in ids)):
            raise UsageError("product_ids must be positive whole numbers")
        if not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"limit must be between 1 and {MAX_LIMIT}")
        if offset < 0:
            raise UsageError("offset must be 0 or more")
        start = parse_day(start_date, "start_date") if start_date else None
        end = parse_day(end_date, "end_date") if end_date else None
        if start and end and start > end:
            raise UsageError(f"start_date {start} is after end_date {end}")
        terms = parse_simple(query) if mode == "simple" else None
        return cls(query.strip(), mode, kinds, ids, start, end, limit, offset, terms)  # type: ignore[arg-type]


class SearchBackend(Protocol):
    """A store's full-text search: total matches and one ranked page of hits."""

    def search(self, request: SearchRequest) -> tuple[int, list[dict[str, Any]]]: ...


def fts5_match(terms: Terms) -> str:
    """FTS5 query text: each phrase quoted (so operators are plain words), ANDed."""
    parts = ['"' + " ".join(words) + '"' for words in terms.phrases]
    if terms.prefix_last:
        parts[-1] += "*"
    return " ".join(parts)


def _page(request: SearchRequest, match: str) -> tuple[int, list[dict[str, Any]]]:
    """The request's page of matches of ``match`` (the backend's query text), and the total."""
    filters = search_index.Filters(
        match=match,
        entities=request.entities,
        product_ids=request.product_ids,
        dated_from=_day_text(request.start_date) if request.start_date else None,
        dated_before=(
            _day_text(request.end_date + timedelta(days=1)) if request.end_date else None
        ),
    )
    return search_index.search(
        database, filters, limit=request.limit, offset=request.offset, marks=(_OPEN, _CLOSE)
    )


def _syntax_error(reason: str) -> UsageError:
    return UsageError(f"query is not valid FTS5 syntax ({reason})")


class SqliteSearch:
    """The FTS5 backend over ``store.search_index``."""

    @store_call("search the cache")
    def search(self, request: SearchRequest) -> tuple[int, list[dict[str, Any]]]:
        match = fts5_match(request.terms) if request.terms else request.query
        try:
            return _page(request, match)
        except sqlite3.OperationalError as exc:
            if request.mode == "raw":
                raise _syntax_error(str(exc).removeprefix("fts5: ")) from None
            raise


def tsquery_text(request: SearchRequest) -> str:
    """The request as ``tsquery`` text (raw mode: its FTS5 syntax translated).

    Raises:
        UsageError: a raw query that is not valid FTS5 syntax.
    """
    if request.terms:
        return tsquery.simple(request.terms.phrases, request.terms.prefix_last)
    try:
        return tsquery.raw(request.query)
    except SyntaxError as exc:
        raise _syntax_error(str(exc.msg)) from None


class PostgresSearch:
    """The PostgreSQL backend: the ``search_docs.words`` tsvector and its GIN index."""

    @store_call("search the cache")
    def search(self, request: SearchRequest) -> tuple[int, list[dict[str, Any]]]:
        match = tsquery_text(request)
        with analytics_reads():
            return _page(request, match)


def store_search() -> SearchBackend:
    """The search backend of the bound store."""
    return PostgresSearch() if backend.is_postgres() else SqliteSearch()


@store_call("search the cache")
def search(request: SearchRequest, engine: SearchBackend | None = None) -> dict[str, Any]:
    """The search answer: ``total``, ranked ``results`` with snippets, ``data_as_of``.

    One connection for the whole answer: a new one starts with a cold page cache.
    """
    total, hits = (engine or store_search()).search(request)
    results = [
        {
            "entity": hit["entity"],
            "id": hit["id"],
            "title": hit["title"],
            "snippet": " ".join(hit["snippet"].split()).replace(_OPEN, MARK).replace(_CLOSE, MARK),
            "score": round(-hit["rank"], 3),
            "product_id": hit["product_id"],
            **({"date": hit["dated"][:10]} if hit["dated"] else {}),
        }
        for hit in hits
    ]
    out: dict[str, Any] = {"total": total, "offset": request.offset, "results": results}
    if request.offset + len(results) < total:
        out["next_offset"] = request.offset + len(results)
    scope = list(request.product_ids) if request.product_ids else None
    out["data_as_of"] = to_iso(queries.oldest_sync_time(scope))
    return out


def mark_terminal(snippet: str, start: str, end: str) -> str:
    """A snippet with its ``**marks**`` replaced by terminal styles."""
    return re.sub(r"\*\*(.+?)\*\*", lambda m: f"{start}{m.group(1)}{end}", snippet)
