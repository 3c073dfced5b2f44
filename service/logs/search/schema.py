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

Each `minute_counts` row also keeps the smallest and largest row id it counted (`lo_id`, `hi_id`; raised and
lowered by the writer, left as they are by retention, so they stay bounds of the ids still there). Ids grow
with arrival, so the ids of a time window lie between the bounds of its minutes, and a word search over a
window asks FTS5 only for matches in that id range.

`slot_counts` is the same count per 5-second slot (floor(ts / 5 000)), without id bounds: histograms whose
buckets are shorter than a minute (windows up to two hours) sum slots instead of counting rows.

`logs_vocab` is an fts5vocab view of the word index: the number of rows holding a word, read from the index
itself, is the total of a one-word search over a one-tenant store without walking its matches.

`logs_terms` is an fts5vocab view of the same index one (term, row) at a time, read lazily: the first indexed
word at or after a given one is found without counting anything, so the store lists the few words a prefix
stands for in a few index seeks. It holds no data: `connect` creates it, in an older database too.

`counted_words` and `word_blocks` (wordcounts.py) hold, for the words common in the store, the index's match
count per block of row ids, kept exact by the writer and retention; `connect` creates them empty.

`logs_id` covers (id, tenant, ts, sid): counts and histograms driven from FTS matches look each match up there
instead of in the table, whose rows carry the text (at 1M entries, a 24 h histogram of a common word: 60 → 37
ms). Ids grow with arrival, so the index is appended to at its end. The writer creates it when it opens a
database without it; readers use it once it is there (`covering_index_ready`).

`progress` holds, for the logs WAL the store is fed from, the position (segment, offset) just after the last
record whose entries are in `logs`. The writer updates it in the transaction that inserts those entries, so
after any crash the store resumes exactly where its data ends: nothing is indexed twice or skipped.

`PRAGMA user_version` is the layout's version. Version 1 added `minute_counts`; version 2 its id bounds,
`slot_counts` and `logs_vocab`. The writer process (re)builds the counts from `logs` in one transaction when it
opens an older database (`migrate`; about a minute per 10M entries on 2 busy cores); readers use them only
once the version says they are there (`rollup_ready`), and count rows until then.
"""

from __future__ import annotations

import sqlite3

from service.logs.search import wordcounts

DB_FILE = "logs.db"
SCHEMA_VERSION = 2
MINUTE_MS = 60_000
SLOT_MS = 5_000
# A row's slot in SQL: floor(ts / 5 000) (SQLite's integer division truncates toward zero).
SLOT_OF_TS = "(ts / 5000 - (ts % 5000 < 0))"

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
CREATE VIRTUAL TABLE IF NOT EXISTS logs_terms USING fts5vocab(logs_fts, instance);
"""

ROLLUP_DDL = """
CREATE TABLE minute_counts (
    tenant  TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    sid     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    lo_id   INTEGER NOT NULL,
    hi_id   INTEGER NOT NULL,
    PRIMARY KEY (tenant, minute, sid)
) WITHOUT ROWID;
CREATE TABLE slot_counts (
    tenant  TEXT NOT NULL,
    slot    INTEGER NOT NULL,
    sid     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (tenant, slot, sid)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE logs_vocab USING fts5vocab(logs_fts, row);
"""

BATCH_DDL = """CREATE TEMP TABLE IF NOT EXISTS batch_slots (
    tenant TEXT, slot INTEGER, sid INTEGER, n INTEGER, lo_id INTEGER, hi_id INTEGER, last_ts INTEGER)"""


def add_counts(conn: sqlite3.Connection, first_id: int, *, streams: bool = True) -> None:
    """Raise the counts by the rows with ids from `first_id` on, in the caller's transaction (the writer per
    batch; `migrate` from the first id, without the per-stream counts it already has). The rows are read once,
    into a per-slot summary (a temp table of a few hundred rows per batch), and the per-stream, per-slot and
    per-minute counts are raised from it: floor(slot / 12) is the minute."""
    conn.execute(BATCH_DDL)
    conn.execute("DELETE FROM temp.batch_slots")
    conn.execute(  # grouped by stream id alone: a stream belongs to one tenant
        f"INSERT INTO temp.batch_slots SELECT tenant, {SLOT_OF_TS} AS s, sid, count(*), min(id), max(id), max(ts) "
        "FROM logs WHERE id >= ? GROUP BY sid, s", (first_id,))
    if streams:
        conn.execute(
            "UPDATE streams SET count = streams.count + agg.n, last_ts = max(streams.last_ts, agg.ts) "
            "FROM (SELECT sid, sum(n) AS n, max(last_ts) AS ts FROM temp.batch_slots GROUP BY sid) AS agg "
            "WHERE streams.id = agg.sid")
    conn.execute("INSERT INTO slot_counts (tenant, slot, sid, n) SELECT tenant, slot, sid, n FROM temp.batch_slots "
                 "WHERE true ON CONFLICT (tenant, slot, sid) DO UPDATE SET n = n + excluded.n")
    conn.execute(
        "INSERT INTO minute_counts (tenant, minute, sid, n, lo_id, hi_id) SELECT tenant, "
        "(slot / 12 - (slot % 12 < 0)) AS m, sid, sum(n), min(lo_id), max(hi_id) FROM temp.batch_slots "
        "GROUP BY sid, m ON CONFLICT (tenant, minute, sid) DO UPDATE SET n = n + excluded.n, "
        "lo_id = min(lo_id, excluded.lo_id), hi_id = max(hi_id, excluded.hi_id)")


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
    conn.executescript(wordcounts.DDL)
    return conn


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use (pages minus free pages)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the layout to SCHEMA_VERSION (writer process only): (re)create the count tables and fill them from
    `logs` in one transaction, so readers see the older layout or a complete new one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for table in ("minute_counts", "slot_counts", "logs_vocab"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in ROLLUP_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            add_counts(conn, -(1 << 63), streams=False)
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


def terms_ready(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'logs_terms'").fetchone() is not None


def rollup_ready(conn: sqlite3.Connection) -> bool:
    """True once `minute_counts` exists and is complete (see `migrate`)."""
    return conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION
