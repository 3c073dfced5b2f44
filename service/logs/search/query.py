"""User text and filters → SQL with every value bound.

Search text is words, as Meilisearch matches them: each word must occur (case- and accent-insensitive), the
last word also matches as a prefix. Every token is quoted for FTS5 (`"tok"`, inner quotes doubled), so FTS5
operators (`OR`, `NEAR(`, `*`, `:`, `^`) and SQL text are searched as words, never interpreted; the whole
match expression is a bound parameter. Text with no word characters at all (`"`, `*`, `;`) cannot be found
through a word index, so it is matched as a case-insensitive substring instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_WORDLIKE = re.compile(r"\w", re.UNICODE)


def fts_expression(text: str) -> str | None:
    """An FTS5 MATCH expression for user text, or None when it has no indexable word."""
    tokens = [t for t in text.split() if _WORDLIKE.search(t)]
    if not tokens:
        return None
    quoted = ['"' + t.replace('"', '""') + '"' for t in tokens]
    quoted[-1] += "*"
    return " AND ".join(quoted)


@dataclass
class Filters:
    """What a search, histogram or count is limited to. Timestamps are Unix ms, both inclusive."""

    tenant: str = ""
    query: str = ""
    source: str | None = None
    stream: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    # Any of these words (or words starting with them): the "errors" filter of the chat tools.
    any_words: tuple[str, ...] = ()
    # The store's own FTS5 expression for these words, matching exactly the rows `match()` matches (prefixes
    # spelled out as the indexed words they stand for, rarer words first): set by the store, never by users.
    fts: str | None = None

    def match(self) -> str | None:
        """The FTS5 expression every result must match (None when words are not part of the filter)."""
        if self.fts is not None:
            return self.fts
        parts = []
        text = self.query.strip()
        if text:
            expr = fts_expression(text)
            if expr is None:
                return None  # a substring filter: not answerable from the word index
            parts.append(expr)
        if self.any_words:
            parts.append("(" + " OR ".join('"' + w.replace('"', '""') + '"*' for w in self.any_words) + ")")
        return " AND ".join(parts) or None

    def only_words(self) -> bool:
        """True when the word index alone decides (no time, source, stream or substring filter)."""
        return (self.match() is not None and self.source is None and self.stream is None
                and self.from_ms is None and self.to_ms is None)

    def text_free(self) -> bool:
        """True when no text or word filter applies: only tenant, time, source and stream limit the rows."""
        return not self.query.strip() and not self.any_words

    def streams_clause(self, column: str) -> tuple[str, list[Any]] | None:
        """A clause limiting `column` (a stream id) to the source and stream filters, and its parameters; None
        when neither is set."""
        clauses = []
        params: list[Any] = [self.tenant]
        if self.source is not None:
            clauses.append("s.source = ?")
            params.append(self.source)
        if self.stream is not None:
            clauses.append("s.stream = ?")
            params.append(self.stream)
        if not clauses:
            return None
        return f"{column} IN (SELECT s.id FROM streams s WHERE s.tenant = ? AND {' AND '.join(clauses)})", params

    def where(self, *, words: bool = True, ids: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
        """A WHERE clause over `logs l` and its parameters; `words=False` leaves out the word match (for
        queries that join the FTS table and match there); `ids` bounds the row ids the word index is asked
        for (every row the other filters allow lies in it)."""
        in_fts = "+l.id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)"
        if ids is not None:
            in_fts = "+l.id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ? AND rowid BETWEEN ? AND ?)"
        clauses = ["l.tenant = ?"]
        params: list[Any] = [self.tenant]
        if self.from_ms is not None:
            clauses.append("l.ts >= ?")
            params.append(self.from_ms)
        if self.to_ms is not None:
            clauses.append("l.ts <= ?")
            params.append(self.to_ms)
        streams = self.streams_clause("l.sid")
        if streams is not None:
            clauses.append(streams[0])
            params.extend(streams[1])
        text = self.query.strip()
        if self.fts is not None and words:  # one match for the text and `any_words` (an AND of both)
            clauses.append(in_fts)
            params.extend([self.fts, *(ids or ())])
            return " AND ".join(clauses), params
        # `+l.id`: the membership test must not drive the plan (SQLite would look every match up by id in the
        # logs_id index and sort them all, instead of walking the (tenant, ts) index newest first).
        if text and (words or self.match() is None):
            expr = fts_expression(text)
            if expr is not None:
                clauses.append(in_fts)
                params.extend([expr, *(ids or ())])
            else:
                clauses.append("instr(lower(l.line), lower(?)) > 0")
                params.append(text)
        if self.any_words and (words or self.match() is None):
            clauses.append(in_fts)
            params.extend([" OR ".join('"' + w.replace('"', '""') + '"*' for w in self.any_words), *(ids or ())])
        return " AND ".join(clauses), params
