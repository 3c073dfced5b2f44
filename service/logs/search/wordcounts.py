"""Counts of the rows holding a common word, per block of row ids, kept exact by the writer.

Counting a word's matches walks its whole row list in the index: 2.17M matches at 10M entries cost 110-250
ms on a busy machine, for the total of a one-word search or a 24 h histogram. For the words that are common in
the store (`counted_words`: at most MAX_WORDS, chosen from a sample of the newest lines, COMMON_SHARE of them
or more, added a few seconds' worth at a time), `word_blocks` holds the number of matching rows in each block
of BLOCK_IDS row ids, so the matches in an id range are the sum of its whole blocks plus the matches in the
partial blocks at its two ends.

The table is a cache of the index's own answer, never a second tokenizer's: every value is a `count(*)` of the
FTS5 match of that word over that block, recomputed in the transaction that changes the block's rows. The
writer recounts the blocks from the first new id after each insert (`after_insert`), retention recounts the
blocks it deleted from (`after_delete`), and a word starts being counted with all its blocks filled in the same
transaction that adds it (`choose_words`). Readers use a word's blocks only when `counted_words` names it.
Each of those transactions stamps the state the blocks are exact for (largest id, rows); a writer finding
another state on start (an older writer wrote or deleted meanwhile) forgets the words and chooses them again.
Blocks count the rows of every tenant: an id range whose rows all belong to one tenant (one minute's bounds,
or a store of one tenant) is counted exactly.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable

DDL = """
CREATE TABLE IF NOT EXISTS counted_words (word TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS word_stamp (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    last_id  INTEGER NOT NULL,
    rows     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS word_blocks (
    word   TEXT NOT NULL,
    block  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (word, block)
) WITHOUT ROWID;
"""

BLOCK_BITS = 12
BLOCK_IDS = 1 << BLOCK_BITS
MAX_WORDS = 64
COMMON_SHARE = 0.02  # of the sampled lines
SAMPLE_LINES = 2_000
# Candidates only: whatever this finds, the counts come from the index. ASCII letters and digits are the
# characters unicode61 keeps in one token and folds to lower case; a word of 4 or more is worth counting.
_CANDIDATE = re.compile(r"[a-z0-9]{4,}")


def ready(conn: sqlite3.Connection) -> bool:
    """Whether the tables exist (`connect` creates them; a database only ever opened read-only may lack them)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'word_blocks'").fetchone() is not None


def words(conn: sqlite3.Connection) -> list[str]:
    if not ready(conn):
        return []
    return [w for (w,) in conn.execute("SELECT word FROM counted_words")]


def _recount(conn: sqlite3.Connection, word: str, first_block: int, last_block: int) -> None:
    """Set the word's counts of blocks first_block..last_block from the index (caller's transaction)."""
    conn.execute("DELETE FROM word_blocks WHERE word = ? AND block BETWEEN ? AND ?", (word, first_block, last_block))
    lo = first_block << BLOCK_BITS
    hi = min((last_block + 1) << BLOCK_BITS, 1 << 62) - 1
    conn.execute(f"INSERT INTO word_blocks (word, block, n) SELECT ?, rowid >> {BLOCK_BITS}, count(*) FROM logs_fts "
                 f"WHERE logs_fts MATCH ? AND rowid BETWEEN ? AND ? GROUP BY rowid >> {BLOCK_BITS}",
                 (word, f'"{word}"', lo, hi))


def _state(conn: sqlite3.Connection) -> tuple[int, int]:
    """(largest row id, rows by the per-stream counts): what a writer that did not keep the blocks changes."""
    return conn.execute("SELECT (SELECT coalesce(max(id), 0) FROM logs), "
                        "(SELECT coalesce(sum(count), 0) FROM streams)").fetchone()


def stamp(conn: sqlite3.Connection) -> None:
    """Record the state the blocks are exact for (end of every transaction that keeps them)."""
    conn.execute("INSERT INTO word_stamp (one, last_id, rows) VALUES (1, ?, ?) ON CONFLICT (one) DO UPDATE "
                 "SET last_id = excluded.last_id, rows = excluded.rows", _state(conn))


def check(conn: sqlite3.Connection) -> bool:
    """At the writer's start: forget every counted word when rows were written or deleted since the last stamp
    (by a writer of an older version, which does not keep the blocks); they are chosen and filled again.
    Returns True when the counts were kept."""
    if not words(conn):
        return True
    found = conn.execute("SELECT last_id, rows FROM word_stamp").fetchone()
    if found is not None and tuple(found) == tuple(_state(conn)):
        return True
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM counted_words")
        conn.execute("DELETE FROM word_blocks")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return False


def after_insert(conn: sqlite3.Connection, first_id: int) -> None:
    """Recount every counted word's blocks from the one holding `first_id` on (the writer, after indexing the
    rows from `first_id` on, in their transaction)."""
    first = max(first_id, 0) >> BLOCK_BITS
    for word in words(conn):
        _recount(conn, word, first, (1 << (62 - BLOCK_BITS)) - 1)
    if ready(conn):
        stamp(conn)


def after_delete(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    """Recount the blocks the deleted `ids` were in (retention, after deleting them from the index, in its
    transaction)."""
    blocks = sorted({i >> BLOCK_BITS for i in ids})
    if not blocks:
        return
    runs: list[list[int]] = []
    for b in blocks:
        if runs and runs[-1][1] == b - 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    for word in words(conn):
        for first, last in runs:
            _recount(conn, word, first, last)


def choose_words(conn: sqlite3.Connection, budget_s: float = 2.0) -> list[str]:
    """Start counting the words common among the newest lines (up to MAX_WORDS in all); returns the words
    added. Each is filled from the index in its own transaction with its entry in `counted_words`; after
    `budget_s` seconds the rest wait for the next call (at 10M entries a word takes 1-3 s), so the writer
    goes on writing between them."""
    if not ready(conn):
        return []
    known = set(words(conn))
    room = MAX_WORDS - len(known)
    if room <= 0:
        return []
    lines = [line for (line,) in conn.execute("SELECT line FROM logs ORDER BY id DESC LIMIT ?", (SAMPLE_LINES,))]
    seen: Counter[str] = Counter()
    for line in lines:
        if line.isascii():
            seen.update(set(_CANDIDATE.findall(line.lower())))
    need = max(1, int(len(lines) * COMMON_SHARE))
    new = sorted((w for w, n in seen.items() if n >= need and w not in known), key=lambda w: (-seen[w], w))[:room]
    added: list[str] = []
    deadline = time.monotonic() + budget_s
    for word in new:
        if added and time.monotonic() > deadline:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO counted_words (word) VALUES (?)", (word,))
            _recount(conn, word, 0, (1 << (62 - BLOCK_BITS)) - 1)
            stamp(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        added.append(word)
    return added


def counted(conn: sqlite3.Connection, word: str) -> bool:
    return conn.execute("SELECT 1 FROM counted_words WHERE word = ?", (word,)).fetchone() is not None


def count_matches(conn: sqlite3.Connection, word: str, lo: int, hi: int) -> int:
    """Rows with ids in [lo, hi] holding the counted `word`: whole blocks from the table, the partial ones at
    the two ends from the index."""
    first = -(-lo // BLOCK_IDS)  # first whole block
    last = (hi + 1) // BLOCK_IDS - 1  # last whole block
    if first > last:
        return _index_count(conn, word, lo, hi)
    total = conn.execute("SELECT coalesce(sum(n), 0) FROM word_blocks WHERE word = ? AND block BETWEEN ? AND ?",
                         (word, first, last)).fetchone()[0]
    if lo < first * BLOCK_IDS:
        total += _index_count(conn, word, lo, first * BLOCK_IDS - 1)
    if (last + 1) * BLOCK_IDS <= hi:
        total += _index_count(conn, word, (last + 1) * BLOCK_IDS, hi)
    return int(total)


def _index_count(conn: sqlite3.Connection, word: str, lo: int, hi: int) -> int:
    return conn.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH ? AND rowid BETWEEN ? AND ?",
                        (f'"{word}"', lo, hi)).fetchone()[0]


RANGES_PER_STATEMENT = 500


def index_counts(conn: sqlite3.Connection, expr: str, ranges: list[tuple[int, int]]) -> list[int]:
    """The index's matches of `expr` in each id range [lo, hi], in one statement per RANGES_PER_STATEMENT ranges
    (a statement per range costs more in setting up than in counting when ranges are short)."""
    out: list[int] = []
    for i in range(0, len(ranges), RANGES_PER_STATEMENT):
        part = ranges[i:i + RANGES_PER_STATEMENT]
        values = ", ".join("(?, ?, ?)" for _ in part)
        rows = dict(conn.execute(
            f"WITH r(i, lo, hi) AS (VALUES {values}) SELECT r.i, (SELECT count(*) FROM logs_fts WHERE logs_fts "
            "MATCH ? AND rowid BETWEEN r.lo AND r.hi) FROM r",
            [*(x for j, (lo, hi) in enumerate(part) for x in (j, lo, hi)), expr]).fetchall())
        out += [rows[j] for j in range(len(part))]
    return out


def count_matches_many(conn: sqlite3.Connection, word: str, ranges: list[tuple[int, int]]) -> list[int]:
    """`count_matches` for each of `ranges` (ascending, disjoint): the blocks read in one range scan, the
    partial ends counted in the index in one statement."""
    if not ranges:
        return []
    whole = [(-(-lo // BLOCK_IDS), (hi + 1) // BLOCK_IDS - 1) for lo, hi in ranges]
    firsts = [a for a, b in whole if a <= b]
    blocks: dict[int, int] = {}
    if firsts:
        blocks = dict(conn.execute("SELECT block, n FROM word_blocks WHERE word = ? AND block BETWEEN ? AND ?",
                                   (word, min(firsts), max(b for a, b in whole if a <= b))).fetchall())
    pieces: list[tuple[int, int]] = []
    owner: list[int] = []
    totals = [0] * len(ranges)
    for k, ((lo, hi), (a, b)) in enumerate(zip(ranges, whole, strict=True)):
        if a > b:
            pieces.append((lo, hi))
            owner.append(k)
            continue
        totals[k] = sum(blocks.get(x, 0) for x in range(a, b + 1))
        if lo < a * BLOCK_IDS:
            pieces.append((lo, a * BLOCK_IDS - 1))
            owner.append(k)
        if (b + 1) * BLOCK_IDS <= hi:
            pieces.append(((b + 1) * BLOCK_IDS, hi))
            owner.append(k)
    for k, n in zip(owner, index_counts(conn, f'"{word}"', pieces), strict=True):
        totals[k] += n
    return totals
