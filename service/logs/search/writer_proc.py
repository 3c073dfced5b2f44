"""The store's writer process: receives pushes as snappy PushRequest bytes and writes them to SQLite.

Indexing a line costs far more CPU than accepting it, so it runs in its own process (its own GIL, at a lower
scheduling priority): the node's event loop pays only an enqueue per push. The process owns the one write
connection and runs retention between batches, so there is a single writer and no lock contention inside
SQLite; on start it brings an older database's layout up to date (`schema.migrate`). Messages from the parent:
`(seq, [(tenant, body, entries), ...], position)`, or None to finish, where `position` is the logs WAL position
the pushes end at (None when the store is fed directly); after each commit it answers `seq`. Counters the
parent reads (written, retention deletions, size) live in `shared`, updated before each commit so they are
never behind what readers can see.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson
import snappy

from service.logs.labels import LabelParseError, parse_labels
from service.logs.search import wordcounts
from service.logs.search.retention import Retention
from service.logs.search.schema import add_counts, connect, migrate, write_progress
from service.proto.push_pb2 import PushRequest

MAX_TXN_ENTRIES = 20_000
CHOOSE_INTERVAL = 5.0  # seconds between looks for common words to count (wordcounts.choose_words)
# Indices into the shared counter array.
WRITTEN, DELETED_AGE, DELETED_SIZE, SIZE, ERRORS, SKIPPED = range(6)
SHARED_SLOTS = 6
# Entry times SQLite's int64 milliseconds hold, with room for the per-minute and bucket arithmetic.
MIN_MS, MAX_MS = -(1 << 62), 1 << 62


class _Streams:
    """(tenant, label string) → stream id, creating `streams` rows on first sight."""

    def __init__(self, conn: sqlite3.Connection, source_label: str) -> None:
        self.conn = conn
        self.source_label = source_label
        self.ids: dict[tuple[str, str], int] = {}

    def get(self, tenant: str, labels_text: str) -> int:
        key = (tenant, labels_text)
        sid = self.ids.get(key)
        if sid is not None:
            return sid
        try:
            labels = parse_labels(labels_text)
        except LabelParseError:
            labels = {}
        source = labels.get(self.source_label) or labels.get("job") or ""
        stream = labels.get("stream", "")
        json_labels = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
        sid = self.conn.execute("INSERT INTO streams (tenant, labels, source, stream) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (tenant, labels) DO UPDATE SET source = source RETURNING id",
                                (tenant, json_labels, source, stream)).fetchone()[0]
        self.ids[key] = sid
        return sid


Row = tuple[int, int, str, int, str]


def _rows(streams: _Streams, next_id: int, tenant: str, body: bytes) -> tuple[list[Row], int]:
    """(the rows of one push, ids from `next_id`; entries skipped). An entry whose time SQLite cannot hold is
    skipped (pushes are validated on the way in; this guards stores fed by anything else)."""
    rows = []
    skipped = 0
    request = PushRequest.FromString(snappy.uncompress(body))
    for s in request.streams:
        sid = streams.get(tenant, s.labels)
        for e in s.entries:
            ts = e.timestamp
            ms = ts.seconds * 1000 + ts.nanos // 1_000_000
            if not MIN_MS <= ms <= MAX_MS:
                skipped += 1
                continue
            rows.append((next_id, ms, tenant, sid, e.line))
            next_id += 1
    return rows, skipped


def _write(conn: sqlite3.Connection, streams: _Streams, next_id: int, pushes: list[tuple[str, bytes, int]],
           shared: Any, position: tuple[int, int] | None) -> int:
    """One transaction for the pushes (and the WAL position they end at); returns the next free row id. Python
    touches each entry once (one tuple); FTS rows, per-stream, per-slot and per-minute counts are derived in SQL."""
    rows: list[Row] = []
    skipped = 0
    first_id = next_id
    conn.execute("BEGIN")
    try:
        for tenant, body, _ in pushes:
            built, n = _rows(streams, next_id, tenant, body)
            rows += built
            skipped += n
            next_id += len(built)
        conn.executemany("INSERT INTO logs (id, ts, tenant, sid, line) VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO logs_fts (rowid, line) SELECT id, line FROM logs WHERE id >= ?", (first_id,))
        add_counts(conn, first_id)
        wordcounts.after_insert(conn, first_id)
        if position is not None:
            write_progress(conn, position)
        shared[WRITTEN] += len(rows)
        shared[SKIPPED] += skipped
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            shared[WRITTEN] -= len(rows)
            shared[SKIPPED] -= skipped
            raise
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        streams.ids.clear()  # ids of streams created in the rolled-back transaction are gone
        raise
    return next_id


def write_batch(conn: sqlite3.Connection, streams: _Streams, next_id: int, pushes: list[tuple[str, bytes, int]],
                shared: Any, position: tuple[int, int] | None = None) -> int:
    """Write the pushes and the WAL position they end at; returns the next free row id.

    No record can stop the writer: when a batch fails for anything but the database itself (an
    OperationalError: disk full, I/O, locked, which the caller retries), each push is written alone and one
    that still fails is skipped and counted in `shared[SKIPPED]`, so the position moves past it."""
    try:
        return _write(conn, streams, next_id, pushes, shared, position)
    except sqlite3.OperationalError:
        raise
    except Exception:  # a record's fault: found below, push by push
        pass
    for push in pushes:
        try:
            next_id = _write(conn, streams, next_id, [push], shared, None)
        except sqlite3.OperationalError:
            raise
        except Exception as exc:
            shared[SKIPPED] += max(0, int(push[2]))
            shared[ERRORS] += 1
            _stderr(f"search store: skipped a push it cannot index: {type(exc).__name__}: {exc}")
    if position is not None:
        _write(conn, streams, next_id, [], shared, position)
    return next_id


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (message[:500] + "\n").encode("utf-8", "replace"))


def run(path: str, source_label: str, instance: str, max_age_s: float, max_bytes: int, tick_interval: float,
        pipe: Connection, shared: Any, nice: int) -> None:
    """The process body: write what arrives, run retention every `tick_interval`, exit on None. A database
    error (disk full, I/O) is reported and ends the process: the parent restarts it with backoff and feeds it
    again from the position the database holds, so nothing is lost or written twice."""
    with contextlib.suppress(OSError):
        os.nice(nice)
    conn = connect(path)
    streams = _Streams(conn, source_label)
    retention = Retention(instance, max_age_s, max_bytes, shared=shared)
    next_tick = next_choice = 0.0
    try:
        migrate(conn)  # an older database gets its per-minute counts here, before anything is written
        wordcounts.check(conn)  # counts an older writer did not keep are dropped, then chosen again
        next_id = (conn.execute("SELECT max(id) FROM logs").fetchone()[0] or 0) + 1
        while True:
            stopping = False
            batch: list[tuple[str, bytes, int]] = []
            position = None
            last_seq = -1
            if pipe.poll(max(0.0, next_tick - time.monotonic())):
                # Drain what is waiting into one transaction (bounded), then acknowledge the last sequence.
                while sum(p[2] for p in batch) < MAX_TXN_ENTRIES and pipe.poll(0):
                    msg = pipe.recv()
                    if msg is None:
                        stopping = True
                        break
                    last_seq, pushes, at = msg
                    batch.extend(pushes)
                    position = at if at is not None else position
            if batch or position is not None:
                try:
                    next_id = write_batch(conn, streams, next_id, batch, shared, position)
                except sqlite3.Error as exc:
                    shared[ERRORS] += 1
                    pipe.send(("error", f"{type(exc).__name__}: {exc}"))
                    return
            if last_seq >= 0:
                pipe.send(last_seq)
            if time.monotonic() >= next_tick and not stopping:
                try:
                    retention(conn)
                    if time.monotonic() >= next_choice:  # a sample of 2000 lines: not at every short tick
                        wordcounts.choose_words(conn)
                        next_choice = time.monotonic() + CHOOSE_INTERVAL
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    pipe.send(("error", f"retention: {exc}"))
                next_tick = time.monotonic() + tick_interval
            if stopping:
                return
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    finally:
        conn.close()
