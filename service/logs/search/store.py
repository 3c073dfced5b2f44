"""LogStore: the local searchable copy of the logs a node received.

In a node the store reads the logs instance's WAL itself (indexer.py), from its own position, so whatever the
instance acknowledged becomes searchable, late when pushes come faster than it indexes, never dropped; the
writing happens in a separate process (writer.py). Without a WAL (tests, tools) `add_push`/`add` feed it.
Reads run on a small thread pool, each thread with its own read-only connection, so searches run beside the
writer (SQLite WAL mode). Counts are exact, with no result cap: with a text or word filter `total` is a COUNT
and histogram buckets a GROUP BY over the matching rows, or the same counts taken over ranges of row ids
(a common word's from its per-block counts, wordcounts.py). Without one, the whole minutes of the window are
summed from the per-minute counts (`minute_counts`, see schema.py) and only the partial minutes at its two
edges are counted in `logs`, all in one read transaction. Histograms take that path when the bucket is a
multiple of a minute and the window starts at or after 1970 (SQL's bucket starts truncate toward zero, so
before it they are not whole minutes).

A "source" (Loggator's container) is the value of `source_label` (default `container`, else `job`). Its id is
the first 12 hex digits of SHA-256 of the name: stable across restarts and nodes, unlike container ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import orjson
import snappy

from service.logs.labels import format_labels
from service.logs.search import indexer as indexer_metrics
from service.logs.search import wordcounts
from service.logs.search import writer as writer_metrics
from service.logs.search.config import SearchConfig
from service.logs.search.indexer import SearchIndexer
from service.logs.search.query import Filters, fts_expression
from service.logs.search.schema import (
    DB_FILE,
    MINUTE_MS,
    SLOT_MS,
    connect,
    covering_index_ready,
    rollup_ready,
    terms_ready,
)
from service.logs.search.writer import Writer
from service.logs.search.writer_proc import DELETED_AGE, DELETED_SIZE, SIZE
from service.metricnames import remove_series
from service.proto.push_pb2 import PushRequest
from service.wal import WAL, Position

ERROR_WORDS = ("error", "exception", "fail", "fatal", "panic")


def source_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def encode_entries(entries: list[Any]) -> bytes:
    """Entries (objects with labels, timestamp_ns, line) as a snappy PushRequest, one stream per label set."""
    request = PushRequest()
    streams: dict[str, Any] = {}
    for e in entries:
        key = format_labels(e.labels)
        s = streams.get(key)
        if s is None:
            s = streams[key] = request.streams.add()
            s.labels = key
        item = s.entries.add()
        item.timestamp.seconds, item.timestamp.nanos = divmod(e.timestamp_ns, 1_000_000_000)
        item.line = e.line
    return snappy.compress(request.SerializeToString())


class RetentionView:
    """What retention has done, as counted by the writer process."""

    def __init__(self, shared: Any) -> None:
        self._shared = shared

    @property
    def deleted(self) -> dict[str, int]:
        return {"age": int(self._shared[DELETED_AGE]), "size": int(self._shared[DELETED_SIZE])}

    @property
    def last_size(self) -> int:
        return int(self._shared[SIZE])


STOP_DEADLINE = 10.0  # seconds a stopping store may spend writing what it read


class LogStore:
    def __init__(self, config: SearchConfig, directory: str, *, instance: str = "default",
                 read_threads: int = 4, writer_nice: int = 10, wal: WAL | None = None) -> None:
        self.config = config
        self.directory = directory
        self.instance = instance
        self.path = os.path.join(directory, DB_FILE)
        self._read_threads = read_threads
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = Writer(self.path, source_label=config.source_label,
                              instance=instance, max_age_s=float(config.retention),
                              max_bytes=config.max_size_bytes, tick_interval=float(config.retention_interval),
                              nice=writer_nice)
        self.writer: Writer | None = None
        self.wal = wal
        self.indexer: SearchIndexer | None = None if wal is None else SearchIndexer(
            self._writer, wal, self.path, instance=instance, max_queue_entries=config.max_queue_entries)
        self.retention = RetentionView(self._writer.shared)
        self.started_at = 0.0
        self._rollup_seen = False  # minute_counts was complete once (it stays so)
        self._covering_seen = False  # the logs_id index existed once (it stays)
        self._terms_seen = False  # the logs_terms view existed once (it stays)
        self._word_counts_seen = False  # the counted words' tables existed once (they stay)

    # ------------------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create the database and start the writer (synchronous; `start` runs it off the event loop)."""
        os.makedirs(self.directory, exist_ok=True)
        connect(self.path).close()  # the schema exists before readers open
        self.writer = self._writer
        self.writer.start()
        self._pool = ThreadPoolExecutor(self._read_threads, thread_name_prefix=f"logs-search-read-{self.instance}")
        self.started_at = time.time()

    def close(self, timeout: float = 10.0) -> None:
        if self.writer is not None:
            self.writer.stop(timeout)
            self.writer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    async def start(self) -> None:
        """Open the store and, with a WAL, start indexing it from the store's own position."""
        await asyncio.to_thread(self.open)
        if self.indexer is not None:
            self.indexer.start()

    @property
    def stored_position(self) -> Position | None:
        """What the store's WAL marker holds: the WAL keeps every record after it (a WAL consumer)."""
        return self.indexer.stored_position if self.indexer is not None else None

    async def stop(self, flush_deadline: float | None = None) -> None:
        """Stop indexing, write what was read (within `flush_deadline`, default 10 s, in all), store the WAL
        marker; never raises."""
        timeout = STOP_DEADLINE if flush_deadline is None else flush_deadline
        deadline = time.monotonic() + timeout
        if self.indexer is not None:
            await self.indexer.stop(timeout / 2)
        await asyncio.to_thread(self.close, max(1.0, deadline - time.monotonic()))
        if self.indexer is not None:
            await self.indexer.finish()

    @property
    def running(self) -> bool:
        return self.writer is not None

    @staticmethod
    def forget_metrics(instance: str) -> None:
        """Remove the self-metric series of ``instance``'s store (its instance was removed, or runs on without
        search)."""
        remove_series((*indexer_metrics.SERIES, *writer_metrics.SERIES), instance)
        for reason in ("age", "size"):
            remove_series((writer_metrics.DELETED,), instance, reason)

    # ------------------------------------------------------------------------------------------ ingest

    def add_push(self, tenant: str, body: bytes, entries: int) -> None:
        """Queue one accepted push (a snappy PushRequest of `entries` lines) for writing. Never blocks."""
        writer = self.writer
        if writer is not None:
            writer.enqueue(tenant, body, entries)

    def add(self, entries: Iterable[Any], tenant: str | None = "") -> None:
        """Queue entries (objects with labels, timestamp_ns, line) for writing. Never blocks."""
        entries = entries if isinstance(entries, list) else list(entries)
        if entries and self.writer is not None:
            self.writer.enqueue(tenant or "", encode_entries(entries), len(entries))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything added so far (with a WAL: everything durable in it now) is written. Blocking:
        for tests and tools."""
        if self.writer is None:
            return True
        if self.indexer is None:
            return self.writer.wait_idle(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.indexer.caught_up():
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------------------------------ reads

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            raise RuntimeError("log store is not running")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def search(self, f: Filters, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        return await self._read(self._search, f, limit, offset)

    # Word searches: FTS5 finds matching rows fast but joining each to `logs` costs. So a total over words alone
    # is counted in the FTS index (when the store holds one tenant), a total with more filters is driven from
    # the FTS matches, and a page is driven from the matches when they are few, else from the newest rows
    # (the (tenant, ts) index) checking membership — which finds 50 common matches quickly.
    FEW_MATCHES = 20_000

    def _single_tenant(self, conn: sqlite3.Connection, tenant: str) -> bool:
        return conn.execute("SELECT NOT EXISTS (SELECT 1 FROM streams WHERE tenant != ?)", (tenant,)).fetchone()[0]

    def _by_id(self, conn: sqlite3.Connection) -> str:
        """How FTS-driven counts reach `logs`: through the covering index once it exists."""
        if not self._covering_seen:
            self._covering_seen = covering_index_ready(conn)
        return "INDEXED BY logs_id" if self._covering_seen else ""

    # One indexed word the writer counts per block of ids (wordcounts.py) is counted from its blocks.
    USE_WORD_COUNTS = True

    def _counted_word(self, conn: sqlite3.Connection, expr: str | None) -> str | None:
        """The word of `expr` when it is one indexed word whose blocks are counted, else None."""
        if not self.USE_WORD_COUNTS or not expr or not self._ASCII_QUOTED.fullmatch(expr):
            return None
        if not self._word_counts_seen:
            self._word_counts_seen = wordcounts.ready(conn)
        word = expr[1:-1].lower()
        return word if self._word_counts_seen and wordcounts.counted(conn, word) else None

    def _fts_count(self, conn: sqlite3.Connection, expr: str, ids: tuple[int, int]) -> int:
        word = self._counted_word(conn, expr)
        if word is not None:
            return wordcounts.count_matches(conn, word, *ids)
        return conn.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH ? AND rowid BETWEEN ? AND ?",
                            (expr, *ids)).fetchone()[0]

    # Word expressions the index answers lazily. FTS5 answers a prefix (`"payment"*`, how the last word of a
    # search matches) by first merging the row lists of every word it begins, so even "the newest 50" costs a
    # walk over all matches (2.17M at 10M entries: 280 ms); one indexed word is read lazily, in either order
    # (0.2 ms). So a prefix of more than PREFIX_INDEXED characters is spelled out as the indexed words it
    # begins (`logs_terms`, a few seeks), when there are at most MAX_TERMS of them: `"payment"` or
    # `("replica" OR "replicas")` match exactly the rows the prefix matches. FTS5 walks an AND from its first
    # part, so the parts are put rarest first, judged by how far back their RARITY_PROBE-th newest match lies.
    USE_TERMS = True
    MAX_TERMS = 8
    PREFIX_INDEXED = 3  # prefix='2 3': shorter prefixes have their own index
    RARITY_PROBE = 100

    def _words(self, conn: sqlite3.Connection, f: Filters) -> Filters:
        """`f` with the FTS5 expression rewritten for the index (same rows), or `f` unchanged."""
        if not self.USE_TERMS or f.fts is not None or f.match() is None:
            return f
        if not self._terms_seen:
            self._terms_seen = terms_ready(conn)
            if not self._terms_seen:
                return f
        parts: list[tuple[str, bool]] = []  # (expression, every word exact)
        text = f.query.strip()
        if text:
            expr = fts_expression(text)
            assert expr is not None  # match() is not None: the text has words
            *whole, last = expr.split(" AND ")
            parts += [(w, self._ASCII_QUOTED.fullmatch(w) is not None) for w in whole]
            parts.append(self._spelled(conn, last))
        if f.any_words:
            spelled = [self._spelled(conn, '"' + w.replace('"', '""') + '"*') for w in f.any_words]
            parts.append(("(" + " OR ".join(e for e, _ in spelled) + ")", all(x for _, x in spelled)))
        if len(parts) > 1 and all(exact for _, exact in parts):
            parts.sort(key=lambda p: self._newest_matches_reach(conn, p[0]))
        return replace(f, fts=" AND ".join(e for e, _ in parts))

    _ASCII_QUOTED = re.compile(r'"[A-Za-z0-9]+"')
    _ASCII_PREFIX = re.compile(r'"([A-Za-z0-9]+)"\*')

    def _spelled(self, conn: sqlite3.Connection, prefix: str) -> tuple[str, bool]:
        """(an expression for one quoted prefix `"w"*`, True when it names indexed words only)."""
        m = self._ASCII_PREFIX.fullmatch(prefix)
        if m is None or len(m.group(1)) <= self.PREFIX_INDEXED:
            return prefix, False
        word = m.group(1).lower()  # unicode61 folds ASCII to lower case and splits on nothing else in it
        terms: list[str] = []
        at = word
        while len(terms) <= self.MAX_TERMS:
            row = conn.execute("SELECT term FROM logs_terms WHERE term >= ? LIMIT 1", (at,)).fetchone()
            if row is None or not row[0].startswith(word):
                break
            terms.append(row[0])
            at = row[0] + "\x00"  # the smallest text after it
        if not terms or len(terms) > self.MAX_TERMS:
            return prefix, False  # nothing to find (the prefix is as cheap), or too many words to list
        quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
        return (quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")"), True

    def _newest_matches_reach(self, conn: sqlite3.Connection, expr: str) -> int:
        """The row id of the RARITY_PROBE-th newest match (the smallest int when there are fewer): smaller is
        rarer."""
        reach = conn.execute("SELECT count(*), min(rowid) FROM (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ? "
                             f"ORDER BY rowid DESC LIMIT {self.RARITY_PROBE})", (expr,)).fetchone()
        return -(1 << 63) if reach[0] < self.RARITY_PROBE else reach[1]

    # The rows holding one word, read from the index's vocabulary (`logs_vocab`) instead of walking every match
    # (2.17M matches at 10M entries: 86 ms instead of 209 on a busy machine). Exact when the search is that one
    # word taken as a prefix (how the last word matches) and exactly one indexed word begins with it; the word
    # must be ASCII letters and digits, which unicode61 folds to their lower case and does not split.
    USE_VOCAB = True
    _ASCII_WORD = re.compile(r"[A-Za-z0-9]+")

    def _vocab_count(self, conn: sqlite3.Connection, f: Filters) -> int | None:
        """Rows holding the one word `f` searches for, or None when the vocabulary cannot tell exactly."""
        if self.USE_VOCAB and f.fts and self._ASCII_QUOTED.fullmatch(f.fts) and self._rollup_ready(conn):
            # one indexed word, spelled out by `_words`: its rows are counted without a second word to check
            if self._counted_word(conn, f.fts) is not None:
                return self._fts_count(conn, f.fts, self.ALL_IDS)
            found = conn.execute("SELECT doc FROM logs_vocab WHERE term = ?", (f.fts[1:-1],)).fetchone()
            return found[0] if found else 0
        words = f.query.split()
        if (not self.USE_VOCAB or f.any_words or len(words) != 1 or not self._ASCII_WORD.fullmatch(words[0])
                or not self._rollup_ready(conn)):
            return None
        word = words[0].lower()
        upper = word[:-1] + chr(ord(word[-1]) + 1)  # every word beginning with `word` sorts before it
        found = conn.execute("SELECT term, doc FROM logs_vocab WHERE term >= ? AND term <= ? LIMIT 2",
                             (word, upper)).fetchall()
        begins = [doc for term, doc in found if term.startswith(word)]
        return None if len(begins) > 1 else sum(begins)  # two or more words begin with it: rows may hold both

    # A page of a common word's matches: the newest matches by row id are found at once (FTS5 walks its index
    # backwards and stops), but the page is by time. Take the newest `offset + limit` matches by id; let T be
    # the last of them by time and m the smallest id of a row newer than T (the (tenant, ts) index, at most
    # CHECK_ROWS rows). Every row newer than T has an id >= m, so adding the matches with ids from m on makes
    # the taken set hold every match that ranks above its own `offset + limit`-th: the page is exact. (Rows of
    # one push are written stream by stream, so m usually lies a push or so below the ids taken.) When more
    # than CHECK_ROWS rows are newer than T, or the ids from m on are more than SPAN_IDS, the page comes from
    # the newest rows, checking each against the matches.
    CHECK_ROWS = 20_000
    SPAN_IDS = 100_000
    USE_ID_ORDER = True

    def _page_by_id(self, conn: sqlite3.Connection, f: Filters, ids: tuple[int, int], cols: str, limit: int,
                    offset: int) -> list[Any] | None:
        need = offset + limit
        where, params = f.where(words=False)
        sql = (f"SELECT {cols} FROM logs_fts CROSS JOIN logs l ON l.id = logs_fts.rowid JOIN streams s "
               f"ON s.id = l.sid WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where} "
               "ORDER BY logs_fts.rowid DESC LIMIT ?")
        rows = conn.execute(sql, [f.match(), *ids, *params, need]).fetchall()
        if len(rows) == need:
            oldest_id = rows[-1][0]
            last = min(rows, key=lambda r: (r[1], r[0]))  # T: the need-th of the taken rows by time
            first_id = self._first_id_since(conn, f, last[1])
            if first_id is not None:
                lo = max(first_id, ids[0])
                if oldest_id - lo > self.SPAN_IDS:
                    return None
                if lo < oldest_id:
                    rows += conn.execute(sql, [f.match(), lo, oldest_id - 1, *params, self.SPAN_IDS]).fetchall()
                rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
                return rows[offset:need]
            newer, first_id = conn.execute(
                "SELECT count(*), min(id) FROM (SELECT id FROM logs INDEXED BY logs_tenant_ts WHERE tenant = ? "
                "AND ts > ? AND ts <= ? LIMIT ?)",
                (f.tenant, last[1], f.to_ms if f.to_ms is not None else 1 << 62, self.CHECK_ROWS)).fetchone()
            if newer >= self.CHECK_ROWS:
                return None
            if first_id is not None and first_id < oldest_id:
                lo = max(first_id, ids[0])
                if oldest_id - lo > self.SPAN_IDS:
                    return None
                rows += conn.execute(sql, [f.match(), lo, oldest_id - 1, *params, self.SPAN_IDS]).fetchall()
        rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
        return rows[offset:need]

    # The check above bounded from the minutes instead of the rows: every row newer than T lies in T's minute
    # or a later one, and `minute_counts` holds a lower bound of each minute's ids, so the smallest of them from
    # T's minute on is at most m, however sparse the matches are (walking the rows newer than T would stop at
    # CHECK_ROWS). At most WINDOW_MINUTE_ROWS minute rows are read.
    def _first_id_since(self, conn: sqlite3.Connection, f: Filters, ts: int) -> int | None:
        """A lower bound of the ids of the rows of `f.tenant` newer than `ts` (up to `f.to_ms`), or None."""
        if not self.USE_TERMS or not self._rollup_ready(conn):
            return None
        hi = (f.to_ms if f.to_ms is not None else 1 << 62) // MINUTE_MS
        rows, lo = conn.execute(
            "SELECT count(*), min(lo_id) FROM (SELECT lo_id FROM minute_counts WHERE tenant = ? AND minute >= ? "
            "AND minute <= ? LIMIT ?)", (f.tenant, ts // MINUTE_MS, hi, self.WINDOW_MINUTE_ROWS)).fetchone()
        if rows >= self.WINDOW_MINUTE_ROWS:
            return None
        return (1 << 62) if lo is None else lo

    # A word search over a time window: row ids follow arrival, so every row of the window lies between the
    # smallest and the largest id its minutes hold (`minute_counts` keeps both per minute and stream), and FTS5
    # skips the matches outside that range instead of joining each to `logs`. Reading the bounds walks the
    # window's minute rows, so it stops after WINDOW_MINUTE_ROWS of them (then the range is all ids).
    WINDOW_MINUTE_ROWS = 50_000
    ALL_IDS = (-(1 << 63), (1 << 63) - 1)

    def _id_range(self, conn: sqlite3.Connection, f: Filters) -> tuple[int, int]:
        """Bounds of the row ids a search with filters `f` can match (all ids when not worth narrowing)."""
        if (f.from_ms is None and f.to_ms is None) or not self._rollup_ready(conn):
            return self.ALL_IDS
        lo_ms = f.from_ms if f.from_ms is not None else -(1 << 62)
        hi_ms = f.to_ms if f.to_ms is not None else 1 << 62
        clauses = ["tenant = ? AND minute >= ? AND minute <= ?"]
        params: list[Any] = [f.tenant, lo_ms // MINUTE_MS, hi_ms // MINUTE_MS]
        streams = f.streams_clause("sid")
        if streams is not None:
            clauses.append(streams[0])
            params.extend(streams[1])
        rows, lo, hi = conn.execute(
            f"SELECT count(*), min(lo_id), max(hi_id) FROM (SELECT lo_id, hi_id FROM minute_counts "
            f"WHERE {' AND '.join(clauses)} LIMIT ?)", [*params, self.WINDOW_MINUTE_ROWS]).fetchone()
        if rows >= self.WINDOW_MINUTE_ROWS:
            return self.ALL_IDS
        return (1, 0) if lo is None else (lo, hi)  # (1, 0): an empty window, no id matches

    # Counts without a text filter: whole minutes from `minute_counts`, partial edge minutes from `logs`.
    USE_ROLLUP = True

    def _rollup_ready(self, conn: sqlite3.Connection) -> bool:
        """Whether `minute_counts` may be read (it stays complete once it was)."""
        if self.USE_ROLLUP and not self._rollup_seen:
            self._rollup_seen = rollup_ready(conn)
        return self.USE_ROLLUP and self._rollup_seen

    ROLLUPS = {MINUTE_MS: ("minute_counts", "minute"), SLOT_MS: ("slot_counts", "slot")}

    def _rollup(self, conn: sqlite3.Connection, f: Filters,
                unit: int = MINUTE_MS) -> tuple[str, str, list[Any], list[Filters]] | None:
        """(the count table of `unit` (a minute or a 5 s slot), WHERE over it for the window's whole units, its
        parameters, the partial units at the edges as filters over `logs`), or None when the counts cannot
        answer: a text filter, a window without a whole unit, or a database whose counts are not built yet."""
        if not f.text_free():
            return None
        lo = None if f.from_ms is None else -(-f.from_ms // unit)  # first whole unit
        hi = None if f.to_ms is None else (f.to_ms + 1) // unit - 1  # last whole unit
        if (lo is not None and hi is not None and lo > hi) or not self._rollup_ready(conn):
            return None
        table, column = self.ROLLUPS[unit]
        clauses = ["tenant = ?"]
        params: list[Any] = [f.tenant]
        edges = []
        if lo is not None:
            clauses.append(f"{column} >= ?")
            params.append(lo)
            if f.from_ms < lo * unit:  # type: ignore[operator]
                edges.append(replace(f, to_ms=lo * unit - 1))
        if hi is not None:
            clauses.append(f"{column} <= ?")
            params.append(hi)
            if f.to_ms > (hi + 1) * unit - 1:  # type: ignore[operator]
                edges.append(replace(f, from_ms=(hi + 1) * unit))
        streams = f.streams_clause("sid")
        if streams is not None:
            clauses.append(streams[0])
            params.extend(streams[1])
        return table, " AND ".join(clauses), params, edges

    @contextlib.contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One read transaction: the statements inside see the same state of the database."""
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")  # nothing was written: this only ends the read

    def _count_rows(self, conn: sqlite3.Connection, f: Filters) -> int:
        where, params = f.where()
        return conn.execute(f"SELECT count(*) FROM logs l WHERE {where}", params).fetchone()[0]

    def _total(self, conn: sqlite3.Connection, f: Filters) -> tuple[int, int | None, tuple[int, int]]:
        """(total, matches of the words alone or None when there are no words, the row ids the matches were
        limited to)."""
        expr = f.match()
        if expr is None:
            rollup = self._rollup(conn, f)
            if rollup is None:
                return self._count_rows(conn, f), None, self.ALL_IDS
            table, where, params, edges = rollup
            with self._snapshot(conn):
                total = conn.execute(f"SELECT coalesce(sum(n), 0) FROM {table} WHERE {where}",
                                     params).fetchone()[0]
                return total + sum(self._count_rows(conn, e) for e in edges), None, self.ALL_IDS
        with self._snapshot(conn):
            ids = self._id_range(conn, f)
            if f.only_words() and self._single_tenant(conn, f.tenant):
                matches = self._vocab_count(conn, f)
                if matches is None:
                    matches = self._fts_count(conn, expr, ids)
                return matches, matches, ids
            matches = self._fts_count(conn, expr, ids)
            where, params = f.where(words=False)
            total = conn.execute(f"SELECT count(*) FROM logs_fts CROSS JOIN logs l {self._by_id(conn)} "
                                 "ON l.id = logs_fts.rowid "
                                 f"WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where}",
                                 [expr, *ids, *params]).fetchone()[0]
        return total, matches, ids

    def _search(self, f: Filters, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        conn = self._conn()
        with self._snapshot(conn):  # the total and the page see the same rows
            f = self._words(conn, f)
            total, matches, ids = self._total(conn, f)
            rows = self._page(conn, f, matches, ids, limit, offset)
        return total, [{"id": str(rid), "timestamp": ts, "container": source, "stream": stream,
                        "labels": orjson.loads(labels), "message": line}
                       for rid, ts, source, stream, labels, line in rows]

    def _page(self, conn: sqlite3.Connection, f: Filters, matches: int | None, ids: tuple[int, int], limit: int,
              offset: int) -> list[Any]:
        cols = "l.id, l.ts, s.source, s.stream, s.labels, l.line"
        rows = None
        if matches is not None and matches <= self.FEW_MATCHES:
            where, params = f.where(words=False)
            rows = conn.execute(
                f"SELECT {cols} FROM logs_fts CROSS JOIN logs l ON l.id = logs_fts.rowid JOIN streams s "
                f"ON s.id = l.sid WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where} "
                "ORDER BY l.ts DESC, l.id DESC LIMIT ? OFFSET ?",
                [f.match(), *ids, *params, limit, offset]).fetchall()
        elif matches is not None and self.USE_ID_ORDER:
            rows = self._page_by_id(conn, f, ids, cols, limit, offset)
        if rows is None:
            where, params = f.where(ids=None if ids == self.ALL_IDS else ids)
            rows = conn.execute(
                f"SELECT {cols} FROM logs l JOIN streams s ON s.id = l.sid "
                f"WHERE {where} ORDER BY l.ts DESC, l.id DESC LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return rows

    async def count(self, f: Filters) -> int:
        return await self._read(self._count, f)

    def _count(self, f: Filters) -> int:
        conn = self._conn()
        with self._snapshot(conn):
            return self._total(conn, self._words(conn, f))[0]

    async def histogram(self, f: Filters, bucket_ms: int) -> tuple[list[dict[str, int]], int]:
        """Counts per bucket aligned to multiples of bucket_ms, zero-filled over [from_ms, to_ms], ascending."""
        return await self._read(self._histogram, f, bucket_ms)

    def _bucket_counts(self, conn: sqlite3.Connection, f: Filters, bucket_ms: int) -> dict[int, int]:
        """{bucket start: rows} over `logs` (buckets with no rows left out)."""
        expr = f.match()
        if expr is None:
            where, params = f.where()
            sql = f"SELECT (l.ts / ?) * ? AS b, count(*) FROM logs l WHERE {where} GROUP BY b"
        else:
            where, params = f.where(words=False)
            sql = (f"SELECT (l.ts / ?) * ? AS b, count(*) FROM logs_fts CROSS JOIN logs l {self._by_id(conn)} "
                   f"ON l.id = logs_fts.rowid WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where} "
                   "GROUP BY b")
            params = [expr, *self._id_range(conn, f), *params]
        return dict(conn.execute(sql, [bucket_ms, bucket_ms, *params]).fetchall())

    # A word histogram over many matches: looking each match up for its time costs ~2 µs (600k matches over 24 h
    # at 10M entries: 1.2 s). Row ids follow arrival, and `minute_counts` bounds the ids of each (tenant,
    # minute, stream), so the ids of a whole bucket form ranges no row of another bucket, minute or tenant can
    # lie in, except where two bounds overlap (rows written out of time order, a push that crosses a minute).
    # Matches in a clean range are counted in the index alone; those in an overlap, or in a minute cut by the
    # window's edge, are looked up as before. Exact for any arrival order: every row lies within the bounds
    # of its own (tenant, minute, stream), so a row in a range covered only by bucket b's bounds is one of
    # bucket b's rows. Taken when the window holds no source or stream filter and the store has at most
    # RANGE_MINUTES (tenant, minute) rows, and holds rows over RANGE_MIN_IDS ids (reading every minute's bounds
    # costs more than looking up the matches of a small store: at 20k entries over 24 h, 36 ms against 12).
    USE_ID_RANGES = True
    RANGE_MINUTES = 100_000
    RANGE_MIN_IDS = 500_000

    def _counts_by_id_ranges(self, conn: sqlite3.Connection, f: Filters, bucket_ms: int) -> dict[int, int] | None:
        """{bucket start: matches} like `_bucket_counts`, or None when this path does not apply."""
        assert f.from_ms is not None and f.to_ms is not None
        expr = f.match()
        if (not self.USE_ID_RANGES or expr is None or f.source is not None or f.stream is not None
                or f.from_ms < 0 or bucket_ms % MINUTE_MS or not self._rollup_ready(conn)):
            return None
        # two subqueries: SQLite reads min() or max() of the key from the end of its index, not both at once
        low_id, high_id = conn.execute("SELECT (SELECT min(id) FROM logs), (SELECT max(id) FROM logs)").fetchone()
        if low_id is None or high_id - low_id < self.RANGE_MIN_IDS:
            return None
        minutes = conn.execute("SELECT tenant, minute, min(lo_id), max(hi_id) FROM minute_counts "
                               "GROUP BY tenant, minute LIMIT ?", (self.RANGE_MINUTES + 1,)).fetchall()
        if len(minutes) > self.RANGE_MINUTES:
            return None
        events: list[tuple[int, int, int]] = []  # (id, +1 opens / -1 closes after it, key)
        out, mixed = -1, -2  # keys of minutes outside the window and of minutes cut by its edges
        for tenant, minute, lo, hi in minutes:
            first, last = minute * MINUTE_MS, minute * MINUTE_MS + MINUTE_MS - 1
            if tenant != f.tenant or last < f.from_ms or first > f.to_ms:
                key = out
            elif first < f.from_ms or last > f.to_ms:
                key = mixed
            else:
                key = first // bucket_ms * bucket_ms  # first >= 0: SQL's truncating division agrees
            events += ((lo, 1, key), (hi + 1, -1, key))
        events.sort()
        clean: list[list[int]] = []  # [first id, last id, bucket]
        dirty: list[list[int]] = []  # [first id, last id]
        active: dict[int, int] = {}
        for i, (at, step, key) in enumerate(events):
            active[key] = active.get(key, 0) + step
            if not active[key]:
                del active[key]
            end = events[i + 1][0] - 1 if i + 1 < len(events) else at - 1
            if end < at or not active or list(active) == [out]:
                continue
            keys = list(active)
            if len(keys) == 1 and keys[0] >= 0:
                if clean and clean[-1][2] == keys[0] and clean[-1][1] == at - 1:
                    clean[-1][1] = end
                else:
                    clean.append([at, end, keys[0]])
            elif dirty and dirty[-1][1] == at - 1:
                dirty[-1][1] = end
            else:
                dirty.append([at, end])
        counts: dict[int, int] = {}
        ranges = [(lo, hi) for lo, hi, _ in clean]
        word = self._counted_word(conn, expr)
        found = (wordcounts.count_matches_many(conn, word, ranges) if word is not None
                 else wordcounts.index_counts(conn, expr, ranges))
        for (_, _, bucket), n in zip(clean, found, strict=True):
            if n:
                counts[bucket] = counts.get(bucket, 0) + n
        where, params = f.where(words=False)
        for i in range(0, len(dirty), wordcounts.RANGES_PER_STATEMENT):  # one statement for many short ranges
            part = dirty[i:i + wordcounts.RANGES_PER_STATEMENT]
            sql = (f"WITH r(lo, hi) AS (VALUES {', '.join('(?, ?)' for _ in part)}) SELECT (l.ts / ?) * ? AS b, "
                   f"count(*) FROM r CROSS JOIN logs_fts CROSS JOIN logs l {self._by_id(conn)} "
                   "ON l.id = logs_fts.rowid WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN r.lo AND r.hi "
                   f"AND {where} GROUP BY b")
            for b, n in conn.execute(sql, [*(x for r in part for x in r), bucket_ms, bucket_ms, expr,
                                           *params]).fetchall():
                counts[b] = counts.get(b, 0) + n
        return counts

    def _histogram(self, f: Filters, bucket_ms: int) -> tuple[list[dict[str, int]], int]:
        assert f.from_ms is not None and f.to_ms is not None
        conn = self._conn()
        # Buckets are (ts / bucket_ms) * bucket_ms in SQL, which truncates toward zero: a whole minute (5 s slot)
        # lies in one bucket when the bucket is a multiple of it and the window holds no negative timestamp.
        unit = next((u for u in (MINUTE_MS, SLOT_MS) if bucket_ms % u == 0), None)
        rollup = self._rollup(conn, f, unit) if unit is not None and f.from_ms >= 0 else None
        if rollup is None:
            with self._snapshot(conn):
                f = self._words(conn, f)
                counts = self._counts_by_id_ranges(conn, f, bucket_ms)
                if counts is None:
                    counts = self._bucket_counts(conn, f, bucket_ms)
        else:
            table, where, params, edges = rollup
            column = self.ROLLUPS[unit][1]  # type: ignore[index]
            with self._snapshot(conn):
                counts = dict(conn.execute(
                    f"SELECT ({column} / ?) * ? AS b, sum(n) FROM {table} WHERE {where} GROUP BY b",
                    [bucket_ms // unit, bucket_ms, *params]).fetchall())  # type: ignore[operator]
                for edge in edges:
                    for b, n in self._bucket_counts(conn, edge, bucket_ms).items():
                        counts[b] = counts.get(b, 0) + n
        first = (f.from_ms // bucket_ms) * bucket_ms
        buckets = [{"timestamp": b, "count": counts.get(b, 0)} for b in range(first, f.to_ms + 1, bucket_ms)]
        return buckets, sum(counts.values())

    async def sources(self, tenant: str) -> list[dict[str, Any]]:
        """Sources with entries: [{id, name, count, lastSeen, streams}], most entries first."""
        return await self._read(self._sources, tenant)

    def _sources(self, tenant: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT source, sum(count), max(last_ts), group_concat(DISTINCT stream) FROM streams "
            "WHERE tenant = ? AND count > 0 GROUP BY source ORDER BY sum(count) DESC, source", (tenant,)).fetchall()
        return [{"id": source_id(name), "name": name, "count": n, "lastSeen": last,
                 "streams": sorted(s for s in (streams or "").split(",") if s)}
                for name, n, last, streams in rows]

    async def source(self, tenant: str, id_or_name: str) -> dict[str, Any] | None:
        """One source by id (or exact name) with its label sets; None when unknown to this tenant."""
        return await self._read(self._source, tenant, id_or_name)

    def _source(self, tenant: str, id_or_name: str) -> dict[str, Any] | None:
        found = next((s for s in self._sources(tenant) if id_or_name in (s["id"], s["name"])), None)
        if found is None:
            return None
        rows = self._conn().execute(
            "SELECT labels, stream, count, last_ts FROM streams WHERE tenant = ? AND source = ? AND count > 0 "
            "ORDER BY count DESC LIMIT 100", (tenant, found["name"])).fetchall()
        first = self._conn().execute(
            "SELECT min(l.ts) FROM logs l WHERE l.tenant = ? AND l.sid IN "
            "(SELECT id FROM streams WHERE tenant = ? AND source = ?)", (tenant, tenant, found["name"])).fetchone()[0]
        return {**found, "firstSeen": first,
                "labelSets": [{"labels": orjson.loads(labels), "stream": stream, "count": n, "lastSeen": last}
                              for labels, stream, n, last in rows]}

    async def resolve_source_id(self, tenant: str, sid: str) -> str | None:
        for s in await self.sources(tenant):
            if s["id"] == sid:
                return s["name"]
        return None

    def status(self) -> dict[str, Any]:
        """The store's state for /api/status; `healthy` is False while its writer is down or it lags more than
        a minute behind the WAL (details in `indexer`)."""
        w = self.writer
        if w is not None:
            w.report()
        out: dict[str, Any] = {
            "running": w is not None, "path": self.path, "queuedEntries": w.queued if w else 0,
            "writtenEntries": w.written if w else 0, "skippedEntries": w.skipped if w else 0,
            "sizeBytes": self.retention.last_size, "maxSizeBytes": self.config.max_size_bytes,
            "retentionSeconds": float(self.config.retention), "deleted": dict(self.retention.deleted)}
        if self.indexer is not None and w is not None:
            indexer = self.indexer.status()
            out["indexer"] = indexer
            out["healthy"] = indexer["healthy"]
        else:
            out["healthy"] = w is not None and w.alive
        return out
