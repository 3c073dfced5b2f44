"""Size retention in the writer process's own terms: the retention pass over a database written by
`write_batch`, without the process around it, so the layout a loaded writer produces can be made at will."""

from __future__ import annotations

from service.logs.search.retention import Retention
from service.logs.search.schema import connect, migrate, used_bytes
from service.logs.search.store import encode_entries
from service.logs.search.writer_proc import SHARED_SLOTS, _Streams, write_batch
from tests.helpers.log_search_helpers import entry, now_ms

MAX = 1024 * 1024


def _pushes(batches: int, now: int, per_batch: int = 2_000) -> list[tuple[str, bytes, int]]:
    """The entries of test_log_search_store.test_size_limit_holds: ~4 MiB with the index."""
    return [("", encode_entries([entry("noisy", f"payload {b} {i} " + "abcdefgh " * 20, now + b * 10_000 + i)
                                 for i in range(per_batch)]), per_batch) for b in range(batches)]


def _written(tmp_path, transactions: list[int], now: int):
    """A store written in transactions of the given numbers of pushes, retention never run in between (a
    writer that fell behind drains its pipe into few large transactions)."""
    conn = connect(str(tmp_path / "logs.db"))
    migrate(conn)
    streams = _Streams(conn, "container")
    shared = [0] * SHARED_SLOTS
    pushes = _pushes(sum(transactions), now)
    next_id, i = 1, 0
    for n in transactions:
        next_id = write_batch(conn, streams, next_id, pushes[i:i + n], shared)
        i += n
    return conn, shared


def test_size_retention_keeps_rows_and_gets_under_the_limit(tmp_path):
    """Deleted rows' words stay in the FTS index until its segments are merged; counting that space as live
    made retention delete every row and still leave the store over its limit (4 + 3 + 2 + 1 pushes: 0 rows,
    2.3 MiB), for good."""
    conn, shared = _written(tmp_path, [4, 3, 2, 1], now_ms())
    retention = Retention("t", 0, MAX, shared)
    retention(conn)
    remaining = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
    assert used_bytes(conn) <= MAX
    assert remaining + shared[2] == 20_000
    # ~2 200 of the 20 000 rows fit in 0.9 MiB; deleting far more than that is space lost to the index
    assert remaining > 1_500
    retention(conn)  # under the limit now: nothing more is deleted
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == remaining
    conn.close()


def test_size_retention_reclaims_space_age_deletions_left_in_the_index(tmp_path):
    """An empty store whose index still holds deleted rows (age retention deletes without merging) is brought
    under the limit by merging alone."""
    conn, shared = _written(tmp_path, [10], now_ms() - 3_600_000)
    conn.execute("INSERT INTO logs_fts (logs_fts, rank) VALUES ('automerge', 0)")  # keep every segment
    Retention("t", 60, 1 << 40, shared)(conn)  # every entry is an hour old: all deleted by age
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 0
    assert used_bytes(conn) > MAX  # the index still holds them
    Retention("t", 0, MAX, shared)(conn)
    assert used_bytes(conn) <= MAX
    conn.close()
