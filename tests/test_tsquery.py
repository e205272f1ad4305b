"""Search text as ``tsquery`` text: FTS5's precedence, quoted words, one-line errors."""

from __future__ import annotations

import re

import pytest

from testio_sync.insights import tsquery


def test_simple_terms_are_quoted_phrases_anded_with_the_last_a_prefix() -> None:
    assert tsquery.simple([("error", "message"), ("check",)], True) == (
        "( 'error' <-> 'message' ) & 'check':*"
    )
    assert tsquery.simple([("or",), ("and",)], False) == "'or' & 'and'"  # words, not operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a OR b c", "( 'a' | ( 'b' & 'c' ) )"),  # AND binds tighter than OR
        ("a NOT b AND c", "( ( 'a' & !'b' ) & 'c' )"),  # NOT tightest
        ("(a OR b) NOT c", "( ( 'a' | 'b' ) & !'c' )"),
        ('"big red" dog*', "( ( 'big' <-> 'red' ) & 'dog':* )"),
        ('"it\'s"', "( 'it' <-> 's' )"),  # a quote inside a phrase is no quote of ours
        ("title:crash", "'crash':A"),
        ("body:crash*", "'crash':*B"),
        ("{body title}: crash", "'crash':AB"),
        ("NEAR(crash page, 5)", "( 'crash' & 'page' )"),
        ("and or not", "( 'and' & 'or' & 'not' )"),  # lower case: plain words, as in FTS5
    ],
)
def test_raw_fts5_syntax_translates(text: str, expected: str) -> None:
    assert tsquery.raw(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"unclosed', "unterminated string"),
        ("crash AND", 'near "end of query"'),
        ("NEAR(", 'near "end of query"'),
        ("nocolumn:x", "no such column: nocolumn"),
        ("crash)", 'near ")"'),
        ("-crash", 'near "-"'),
        ("OR crash", 'near "OR"'),
    ],
)
def test_bad_raw_syntax_is_one_short_reason(text: str, reason: str) -> None:
    with pytest.raises(SyntaxError, match=re.escape(reason)) as caught:
        tsquery.raw(text)
    assert "\n" not in str(caught.value.msg)
