"""LogStore: the local searchable copy of the logs a node received.

In a node the store reads the logs instance's WAL itself (indexer.py), from its own position, so whatever the
instance acknowledged becomes searchable, late when pushes come faster than it indexes, never dropped; the
writing happens in a separate process (writer.py). Without a WAL (tests, tools) `add_push`/`add` feed it.
Reads run on a small thread pool, each thread with its own read-only connection, so searches run beside the
writer (SQLite WAL mode). Counts are exact, with no result cap: with a text or word filter `total` is a COUNT
and histogram buckets a GROUP BY over the matching rows. Without one, the whole minutes of the window are
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
from service.logs.search import writer as writer_metrics
from service.logs.search.config import SearchConfig
from service.logs.search.indexer import SearchIndexer
from service.logs.search.query import Filters
from service.logs.search.schema import DB_FILE, MINUTE_MS, connect, covering_index_ready, rollup_ready
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

    def _fts_count(self, conn: sqlite3.Connection, expr: str, ids: tuple[int, int]) -> int:
        return conn.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH ? AND rowid BETWEEN ? AND ?",
                            (expr, *ids)).fetchone()[0]

    # A word search over a short time window: row ids follow arrival, so every row of the window lies between
    # the smallest and the largest id in it, and FTS5 skips the matches outside that range instead of joining
    # each to `logs`. Finding the range scans the window's index entries, so it is done only when the
    # per-minute counts say the window holds few rows.
    WINDOW_ROWS = 200_000
    ALL_IDS = (-(1 << 63), (1 << 63) - 1)

    def _id_range(self, conn: sqlite3.Connection, f: Filters) -> tuple[int, int]:
        """Bounds of the row ids a search with filters `f` can match (all ids when not worth narrowing)."""
        if (f.from_ms is None and f.to_ms is None) or not self._rollup_ready(conn):
            return self.ALL_IDS
        lo_ms = f.from_ms if f.from_ms is not None else -(1 << 62)
        hi_ms = f.to_ms if f.to_ms is not None else 1 << 62
        rows = conn.execute("SELECT coalesce(sum(n), 0) FROM minute_counts WHERE tenant = ? AND minute >= ? "
                            "AND minute <= ?", (f.tenant, lo_ms // MINUTE_MS, hi_ms // MINUTE_MS)).fetchone()[0]
        if rows > self.WINDOW_ROWS:
            return self.ALL_IDS
        lo, hi = conn.execute("SELECT min(id), max(id) FROM logs WHERE tenant = ? AND ts >= ? AND ts <= ?",
                              (f.tenant, lo_ms, hi_ms)).fetchone()
        return (1, 0) if lo is None else (lo, hi)  # (1, 0): an empty window, no id matches

    # Counts without a text filter: whole minutes from `minute_counts`, partial edge minutes from `logs`.
    USE_ROLLUP = True

    def _rollup_ready(self, conn: sqlite3.Connection) -> bool:
        """Whether `minute_counts` may be read (it stays complete once it was)."""
        if self.USE_ROLLUP and not self._rollup_seen:
            self._rollup_seen = rollup_ready(conn)
        return self.USE_ROLLUP and self._rollup_seen

    def _rollup(self, conn: sqlite3.Connection, f: Filters) -> tuple[str, list[Any], list[Filters]] | None:
        """(WHERE over `minute_counts` for the window's whole minutes, its parameters, the partial minutes at
        the edges as filters over `logs`), or None when the rollup cannot answer: a text filter, a window
        without a whole minute, or a database whose rollup is not built yet."""
        if not f.text_free():
            return None
        lo = None if f.from_ms is None else -(-f.from_ms // MINUTE_MS)  # first whole minute
        hi = None if f.to_ms is None else (f.to_ms + 1) // MINUTE_MS - 1  # last whole minute
        if (lo is not None and hi is not None and lo > hi) or not self._rollup_ready(conn):
            return None
        clauses = ["tenant = ?"]
        params: list[Any] = [f.tenant]
        edges = []
        if lo is not None:
            clauses.append("minute >= ?")
            params.append(lo)
            if f.from_ms < lo * MINUTE_MS:  # type: ignore[operator]
                edges.append(replace(f, to_ms=lo * MINUTE_MS - 1))
        if hi is not None:
            clauses.append("minute <= ?")
            params.append(hi)
            if f.to_ms > (hi + 1) * MINUTE_MS - 1:  # type: ignore[operator]
                edges.append(replace(f, from_ms=(hi + 1) * MINUTE_MS))
        streams = f.streams_clause("sid")
        if streams is not None:
            clauses.append(streams[0])
            params.extend(streams[1])
        return " AND ".join(clauses), params, edges

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
            where, params, edges = rollup
            with self._snapshot(conn):
                total = conn.execute(f"SELECT coalesce(sum(n), 0) FROM minute_counts WHERE {where}",
                                     params).fetchone()[0]
                return total + sum(self._count_rows(conn, e) for e in edges), None, self.ALL_IDS
        with self._snapshot(conn):
            ids = self._id_range(conn, f)
            matches = self._fts_count(conn, expr, ids)
            if f.only_words() and self._single_tenant(conn, f.tenant):
                return matches, matches, ids
            where, params = f.where(words=False)
            total = conn.execute(f"SELECT count(*) FROM logs_fts CROSS JOIN logs l {self._by_id(conn)} "
                                 "ON l.id = logs_fts.rowid "
                                 f"WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where}",
                                 [expr, *ids, *params]).fetchone()[0]
        return total, matches, ids

    def _search(self, f: Filters, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        conn = self._conn()
        total, matches, ids = self._total(conn, f)
        cols = "l.id, l.ts, s.source, s.stream, s.labels, l.line"
        if matches is not None and matches <= self.FEW_MATCHES:
            where, params = f.where(words=False)
            rows = conn.execute(
                f"SELECT {cols} FROM logs_fts CROSS JOIN logs l ON l.id = logs_fts.rowid JOIN streams s "
                f"ON s.id = l.sid WHERE logs_fts MATCH ? AND logs_fts.rowid BETWEEN ? AND ? AND {where} "
                "ORDER BY l.ts DESC, l.id DESC LIMIT ? OFFSET ?",
                [f.match(), *ids, *params, limit, offset]).fetchall()
        else:
            where, params = f.where()
            rows = conn.execute(
                f"SELECT {cols} FROM logs l JOIN streams s ON s.id = l.sid "
                f"WHERE {where} ORDER BY l.ts DESC, l.id DESC LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return total, [{"id": str(rid), "timestamp": ts, "container": source, "stream": stream,
                        "labels": orjson.loads(labels), "message": line}
                       for rid, ts, source, stream, labels, line in rows]

    async def count(self, f: Filters) -> int:
        return await self._read(self._count, f)

    def _count(self, f: Filters) -> int:
        return self._total(self._conn(), f)[0]

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

    def _histogram(self, f: Filters, bucket_ms: int) -> tuple[list[dict[str, int]], int]:
        assert f.from_ms is not None and f.to_ms is not None
        conn = self._conn()
        # Buckets are (ts / bucket_ms) * bucket_ms in SQL, which truncates toward zero: a whole minute lies in
        # one bucket when the bucket is a multiple of a minute and the window holds no negative timestamp.
        rollup = self._rollup(conn, f) if bucket_ms % MINUTE_MS == 0 and f.from_ms >= 0 else None
        if rollup is None:
            counts = self._bucket_counts(conn, f, bucket_ms)
        else:
            where, params, edges = rollup
            with self._snapshot(conn):
                counts = dict(conn.execute(
                    f"SELECT (minute / ?) * ? AS b, sum(n) FROM minute_counts WHERE {where} GROUP BY b",
                    [bucket_ms // MINUTE_MS, bucket_ms, *params]).fetchall())
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
