"""Retention by age and by size, run by the writer process between batches.

Entries are deleted oldest first in chunks (one short transaction each, so searches and writes interleave),
from `logs`, from the FTS index (external content: the 'delete' command with the stored text), from the
per-stream counts and from the per-minute and per-slot counts (one reaching 0 is removed; a minute's id bounds
stay as they are: still bounds of the ids left); the counted words' blocks the rows were in are recounted
(wordcounts.py). Size is the database's pages in use; after deleting, freed pages are returned to the file
system (incremental vacuum). Deletions and size are counted in `shared` (the writer's counter array, read by
the node) before each commit.

A deleted row's words stay in the FTS index (its old segment, plus a delete marker in a new one) until the
segments holding them are merged together, and the oldest rows live in the oldest, largest segment, which
FTS5's own merging rarely touches. Until then they count in the size as if the rows were still there, so
the size check merges the index first (`reclaim_index`) and deletes rows only for what merging cannot give
back; without that it deleted rows for space their deleted predecessors held, down to an empty store still
over its limit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.logs.search import wordcounts
from service.logs.search.schema import MINUTE_MS, SLOT_MS, used_bytes

CHUNK = 5_000
MERGE_PAGES = 1_000  # leaf pages an FTS merge step writes (bounds each step's transaction)
# Slots of the shared counter array (see writer_proc.py).
DELETED_AGE, DELETED_SIZE, SIZE = 1, 2, 3


@dataclass
class Retention:
    instance: str
    max_age_s: float
    max_bytes: int
    shared: Any  # a sequence of ints, at least SIZE + 1 long
    # The size check deletes down to this fraction of max_bytes, so it does not run on every batch.
    low_water: float = 0.9
    # Rows may have been deleted since the index was last merged as far as it goes (unknown at start).
    _unmerged: bool = field(default=True, init=False, repr=False)

    def __call__(self, conn: sqlite3.Connection) -> None:
        if self.max_age_s > 0:
            cutoff = int(time.time() * 1000 - self.max_age_s * 1000)
            while True:
                n = delete_oldest(conn, CHUNK, before_ms=cutoff, counted=self._counter(DELETED_AGE))
                self._unmerged = self._unmerged or n > 0
                if n < CHUNK:
                    break
        size = used_bytes(conn)
        if size > self.max_bytes:
            target = int(self.max_bytes * self.low_water)
            if self._unmerged:
                size = self._reclaim(conn, target)
            while size > target:
                total = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
                if total == 0:
                    break
                share = (size - target) / size
                n = delete_oldest(conn, max(100, min(50 * CHUNK, int(total * share) + 1)),
                                  counted=self._counter(DELETED_SIZE))
                self._unmerged = self._unmerged or n > 0
                size = self._reclaim(conn, target)
                if n == 0:
                    break
        if conn.execute("PRAGMA freelist_count").fetchone()[0] > 256:
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free only one page
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.shared[SIZE] = size

    def _reclaim(self, conn: sqlite3.Connection, target: int) -> int:
        size, merged = reclaim_index(conn, target)
        self._unmerged = not merged
        return size

    def _counter(self, slot: int) -> Callable[[int], None]:
        def add(n: int) -> None:
            self.shared[slot] += n

        return add


def reclaim_index(conn: sqlite3.Connection, target: int) -> tuple[int, bool]:
    """Merge the FTS index's segments, MERGE_PAGES leaf pages a step, until the database uses at most `target`
    bytes or there is nothing left to merge; returns (bytes in use, True if nothing is left to merge). The first
    step ('merge' with a negative count) puts every segment on one level, so the oldest takes part and delete
    markers meet the entries they delete. A step that changes fewer than two rows did no work (the FTS5
    'merge' command's contract)."""
    size = used_bytes(conn)
    pages = -MERGE_PAGES
    while size > target:
        before = conn.total_changes
        conn.execute("INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?)", (pages,))
        size = used_bytes(conn)
        if conn.total_changes - before < 2:
            return size, True
        pages = MERGE_PAGES
    return size, False


def delete_oldest(conn: sqlite3.Connection, limit: int, *, before_ms: int | None = None,
                  counted: Callable[[int], None] = lambda n: None) -> int:
    """Delete up to `limit` oldest entries (only those older than `before_ms` when given); `counted(n)` is
    called before the commit (and `counted(-n)` if the commit fails)."""
    cols = "id, line, tenant, sid, ts"
    if before_ms is None:
        rows = conn.execute(f"SELECT {cols} FROM logs ORDER BY ts LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute(f"SELECT {cols} FROM logs WHERE ts < ? ORDER BY ts LIMIT ?",
                            (before_ms, limit)).fetchall()
    if not rows:
        return 0
    per_stream: dict[int, int] = {}
    per_minute: dict[tuple[str, int, int], int] = {}
    per_slot: dict[tuple[str, int, int], int] = {}
    for _, _, tenant, sid, ts in rows:
        per_stream[sid] = per_stream.get(sid, 0) + 1
        key = (tenant, ts // MINUTE_MS, sid)
        per_minute[key] = per_minute.get(key, 0) + 1
        key = (tenant, ts // SLOT_MS, sid)
        per_slot[key] = per_slot.get(key, 0) + 1
    conn.execute("BEGIN")
    try:
        conn.executemany("INSERT INTO logs_fts (logs_fts, rowid, line) VALUES ('delete', ?, ?)",
                         [(row[0], row[1]) for row in rows])
        wordcounts.after_delete(conn, [row[0] for row in rows])
        conn.executemany("DELETE FROM logs WHERE id = ?", [(row[0],) for row in rows])
        conn.executemany("UPDATE streams SET count = count - ? WHERE id = ?",
                         [(n, sid) for sid, n in per_stream.items()])
        conn.executemany("UPDATE minute_counts SET n = n - ? WHERE tenant = ? AND minute = ? AND sid = ?",
                         [(n, *key) for key, n in per_minute.items()])
        conn.executemany("DELETE FROM minute_counts WHERE tenant = ? AND minute = ? AND sid = ? AND n <= 0",
                         list(per_minute))
        conn.executemany("UPDATE slot_counts SET n = n - ? WHERE tenant = ? AND slot = ? AND sid = ?",
                         [(n, *key) for key, n in per_slot.items()])
        conn.executemany("DELETE FROM slot_counts WHERE tenant = ? AND slot = ? AND sid = ? AND n <= 0",
                         list(per_slot))
        if wordcounts.ready(conn):
            wordcounts.stamp(conn)
        counted(len(rows))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            counted(-len(rows))
            raise
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(rows)
