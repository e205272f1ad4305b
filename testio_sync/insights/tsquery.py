"""Search text as a PostgreSQL ``tsquery``: the same query language as the FTS5 store.

Simple mode's ``Terms`` become quoted words (``'error' <-> 'message' & 'check':*``),
so user text never reaches the ``tsquery`` parser unquoted. Raw mode takes the FTS5
syntax the search tool documents (phrases, ``prefix*``, ``AND``/``OR``/``NOT`` with
FTS5's precedence, parentheses, ``NEAR(...)``, ``title:``/``body:`` filters) and
translates it, so a raw query means the same on both stores. Two limits: ``NEAR``
keeps its phrases but not their distance (the words must all occur), and a column
filter is the title's or body's weight (``:A``/``:B``). Bad syntax raises
``SyntaxError`` with a short reason; the caller words the one-line error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# FTS5 barewords: letters, digits, "_" and any non-ASCII character.
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"]|"")*"?)|(?P<word>(?:\w|[^\x00-\x7f])+)|(?P<punct>\S))'
)
_WEIGHTS = {"title": "A", "body": "B"}
OPERATORS = ("AND", "OR", "NOT")


def _quoted(word: str, weights: str, prefix: bool) -> str:
    """One word as a ``tsquery`` operand: always quoted, so never an operator."""
    marks = ("*" if prefix else "") + weights
    return f"'{word}'" + (f":{marks}" if marks else "")


def phrase(words: Sequence[str], *, prefix: bool = False, weights: str = "") -> str:
    """Words that must follow each other; the last may match as a prefix."""
    parts = [_quoted(w, weights, prefix and i == len(words) - 1) for i, w in enumerate(words)]
    text = " <-> ".join(parts)
    return f"( {text} )" if len(parts) > 1 else text


def simple(phrases: Sequence[Sequence[str]], prefix_last: bool) -> str:
    """Simple mode: every phrase must match (ANDed); the last may be a prefix."""
    return " & ".join(
        phrase(words, prefix=prefix_last and i == len(phrases) - 1)
        for i, words in enumerate(phrases)
    )


@dataclass
class _Token:
    kind: str  # string, word, punct, end
    text: str


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        found = _TOKEN.match(text, pos)
        assert found is not None  # every non-space character is some token
        kind = found.lastgroup or "punct"
        value = found.group(kind)
        if kind == "string" and (len(value) < 2 or not value.endswith('"')):
            raise SyntaxError("unterminated string")
        out.append(_Token(kind, value))
        pos = found.end()
    out.append(_Token("end", ""))
    return out


class _Parser:
    """FTS5's grammar: OR binds loosest, then AND (or two phrases side by side), then NOT."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def near(self) -> str:
        where = self.peek().text or "end of query"
        return f'syntax error near "{where}"'

    def expect(self, punct: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != punct:
            self.at -= 1
            raise SyntaxError(self.near())

    def parse(self) -> str:
        query = self.either("")
        if self.peek().kind != "end":
            raise SyntaxError(self.near())
        return query

    def either(self, weights: str) -> str:
        parts = [self.both(weights)]
        while self._operator("OR"):
            self.take()
            parts.append(self.both(weights))
        return parts[0] if len(parts) == 1 else "( " + " | ".join(parts) + " )"

    def both(self, weights: str) -> str:
        parts = [self.unless(weights)]
        while True:
            if self._operator("AND"):
                self.take()
            elif not self._starts_operand():
                break
            parts.append(self.unless(weights))
        return parts[0] if len(parts) == 1 else "( " + " & ".join(parts) + " )"

    def unless(self, weights: str) -> str:
        query = self.operand(weights)
        while self._operator("NOT"):
            self.take()
            query = f"( {query} & !{self.operand(weights)} )"
        return query

    def _operator(self, name: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == name

    def _starts_operand(self) -> bool:
        token = self.peek()
        if token.kind == "string":
            return True
        if token.kind == "word":
            return token.text not in OPERATORS
        return token.text in ("(", "{")

    def operand(self, weights: str) -> str:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.take()
            query = self.either(weights)
            self.expect(")")
            return query
        if token.kind == "punct" and token.text == "{":
            return self.column_filter(self.columns())
        if token.kind == "word" and token.text == "NEAR" and self._next_is("("):
            return self.near_group(weights)
        if token.kind == "word" and token.text not in OPERATORS and self._next_is(":"):
            return self.column_filter([self.take().text])
        if token.kind in ("word", "string") and (
            token.kind == "string" or token.text not in OPERATORS
        ):
            return self.phrase(weights)
        raise SyntaxError(self.near())

    def _next_is(self, punct: str) -> bool:
        token = self.tokens[self.at + 1]
        return token.kind == "punct" and token.text == punct

    def columns(self) -> list[str]:
        self.expect("{")
        names: list[str] = []
        while self.peek().kind == "word":
            names.append(self.take().text)
        self.expect("}")
        return names

    def column_filter(self, names: list[str]) -> str:
        unknown = [n for n in names if n not in _WEIGHTS]
        if unknown or not names:
            raise SyntaxError(f"no such column: {unknown[0] if unknown else '{}'}")
        self.expect(":")
        weights = "".join(sorted({_WEIGHTS[n] for n in names}))
        return self.operand(weights)

    def phrase(self, weights: str) -> str:
        token = self.take()
        words = re.findall(r"\w+", token.text[1:-1] if token.kind == "string" else token.text)
        prefix = self.peek().kind == "punct" and self.peek().text == "*"
        if prefix:
            self.take()
        if not words:  # an empty phrase matches nothing
            return "( 'x' & !'x' )"
        return phrase(words, prefix=prefix, weights=weights)

    def near_group(self, weights: str) -> str:
        self.take()
        self.expect("(")
        parts: list[str] = []
        while self.peek().kind in ("word", "string") and not self._operator("NEAR"):
            parts.append(self.phrase(weights))
        if not parts:
            raise SyntaxError(self.near())
        if self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            if self.peek().kind != "word" or not self.peek().text.isdigit():
                raise SyntaxError(self.near())
            self.take()
        self.expect(")")
        return parts[0] if len(parts) == 1 else "( " + " & ".join(parts) + " )"


def raw(text: str) -> str:
    """A raw (FTS5 syntax) query as ``tsquery`` text.

    Raises:
        SyntaxError: the text is not valid FTS5 syntax (the reason, one line).
    """
    return _Parser(text).parse()
