"""The SQLite layout of the log store.

`streams` interns each distinct (tenant, label set) once — Loki pushes many lines per stream — and keeps a
live `count` per stream (raised by the writer, lowered by retention), so per-source counts are exact without
scanning. `logs` holds one row per line; `logs_fts` is an external-content FTS5 index over `logs.line`
(unicode61, diacritics removed: case- and accent-insensitive words). Row ids are assigned by the writer, so
FTS rows are inserted with the same rowid without a round trip. `auto_vacuum=INCREMENTAL` lets retention give
freed pages back to the file system.

`minute_counts` holds the number of rows of `logs` per (tenant, minute, stream id), where a row's minute is
floor(ts / 60 000); it is WITHOUT ROWID with that key, so a tenant's window of minutes is one range of it. It
is kept exactly in step with `logs`: raised by the writer in the transaction that inserts the rows, lowered by
retention in the transaction that deletes them (a minute reaching 0 is removed). Histograms and totals
without a text filter read whole minutes from it instead of scanning `logs`. It has one row per stream per
minute with lines, so it is small when streams write many lines a minute (1M lines over 24 h from 20 streams:
28 800 rows) and gains little when they write about one.

`logs_id` covers (id, tenant, ts, sid): counts and histograms driven from FTS matches look each match up there
instead of in the table, whose rows carry the text (at 1M entries, a 24 h histogram of a common word: 60 → 37
ms). Ids grow with arrival, so the index is appended to at its end. The writer creates it when it opens a
database without it; readers use it once it is there (`covering_index_ready`).

`progress` holds, for the logs WAL the store is fed from, the position (segment, offset) just after the last
record whose entries are in `logs`. The writer updates it in the transaction that inserts those entries, so
after any crash the store resumes exactly where its data ends: nothing is indexed twice or skipped.

`PRAGMA user_version` is the layout's version. Version 1 added `minute_counts`: the writer process creates it
and fills it from `logs` in one transaction when it opens an older database (`migrate`); readers use it only
once the version says it is there (`rollup_ready`).
"""

from __future__ import annotations

import sqlite3

DB_FILE = "logs.db"
SCHEMA_VERSION = 1
MINUTE_MS = 60_000
# A row's minute in SQL: floor(ts / 60 000) (SQLite's integer division truncates toward zero).
MINUTE_OF_TS = "(ts / 60000 - (ts % 60000 < 0))"

DDL = """
CREATE TABLE IF NOT EXISTS streams (
    id       INTEGER PRIMARY KEY,
    tenant   TEXT NOT NULL,
    labels   TEXT NOT NULL,
    source   TEXT NOT NULL,
    stream   TEXT NOT NULL,
    count    INTEGER NOT NULL DEFAULT 0,
    last_ts  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, labels)
);
CREATE INDEX IF NOT EXISTS streams_source ON streams (tenant, source);
CREATE TABLE IF NOT EXISTS logs (
    id      INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    tenant  TEXT NOT NULL,
    sid     INTEGER NOT NULL,
    line    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_tenant_ts ON logs (tenant, ts, sid);
CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts);
CREATE INDEX IF NOT EXISTS logs_id ON logs (id, tenant, ts, sid);
CREATE TABLE IF NOT EXISTS progress (
    source   TEXT PRIMARY KEY,
    segment  INTEGER NOT NULL,
    offset   INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
    line, content='logs', content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='2 3'
);
"""

ROLLUP_DDL = """
CREATE TABLE IF NOT EXISTS minute_counts (
    tenant  TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    sid     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (tenant, minute, sid)
) WITHOUT ROWID
"""


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas. Readers and the one writer share the file through WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA cache_size = -32000")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new database
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # no fsync per commit: the logs WAL is the durability point
    conn.execute("PRAGMA cache_size = -64000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.executescript(DDL)
    return conn


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use (pages minus free pages)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the layout to SCHEMA_VERSION (writer process only): create `minute_counts` and fill it from `logs`
    in one transaction, so readers see either no table or a complete one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.execute(ROLLUP_DDL)
            conn.execute("DELETE FROM minute_counts")
            conn.execute(f"INSERT INTO minute_counts (tenant, minute, sid, n) SELECT tenant, {MINUTE_OF_TS} AS m, "
                         "sid, count(*) FROM logs GROUP BY tenant, m, sid")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


WAL_SOURCE = "wal"


def read_progress(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """(segment, offset) the store has indexed the logs WAL up to, or None when it was never fed from one."""
    row = conn.execute("SELECT segment, offset FROM progress WHERE source = ?", (WAL_SOURCE,)).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def write_progress(conn: sqlite3.Connection, position: tuple[int, int]) -> None:
    conn.execute("INSERT INTO progress (source, segment, offset) VALUES (?, ?, ?) ON CONFLICT (source) "
                 "DO UPDATE SET segment = excluded.segment, offset = excluded.offset", (WAL_SOURCE, *position))


def covering_index_ready(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'logs_id'").fetchone() is not None


def rollup_ready(conn: sqlite3.Connection) -> bool:
    """True once `minute_counts` exists and is complete (see `migrate`)."""
    return conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION
