"""Per-minute counts (`minute_counts`): histograms and totals read from them are identical to the exact count
over `logs`, after writes and after retention by age and by size; an older database is backfilled on open."""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter

import pytest

from service.logs.search.config import SearchConfig
from service.logs.search.query import Filters
from service.logs.search.schema import SCHEMA_VERSION, SLOT_MS, connect
from service.logs.search.store import LogStore
from tests.helpers.aio import run
from tests.helpers.log_search_helpers import add_entries, entry, make_store, now_ms

MINUTE = 60_000
HOUR = 60 * MINUTE
CONTAINERS = ("web", "db", "cron")
TENANTS = ("", "t2")
# Multiples of a minute (the per-minute counts answer) and others (the exact count answers).
BUCKETS = (60_000, 120_000, 300_000, 900_000, 3_600_000, 86_400_000, 1_000, 30_000, 45_000, 90_000)


def random_entries(rng: random.Random, start_ms: int, span_ms: int, n: int) -> dict[str, list]:
    """n entries per tenant over [start_ms, start_ms + span_ms): mostly uniform, some on minute edges (the
    first and last millisecond of a minute) and some sharing a timestamp."""
    out: dict[str, list] = {t: [] for t in TENANTS}
    first_minute, last_minute = -(-start_ms // MINUTE), (start_ms + span_ms) // MINUTE - 1
    for i in range(n * len(TENANTS)):
        kind = rng.random()
        if kind < 0.15:
            ts = rng.randint(first_minute, last_minute) * MINUTE + rng.choice((0, 1, MINUTE - 2, MINUTE - 1))
        elif kind < 0.2:
            ts = start_ms + span_ms // 2
        else:
            ts = rng.randrange(start_ms, start_ms + span_ms)
        out[rng.choice(TENANTS)].append(entry(rng.choice(CONTAINERS), f"line {i}", ts,
                                              rng.choice(("stdout", "stderr"))))
    return out


def add_all(store: LogStore, by_tenant: dict[str, list]) -> None:
    for tenant, entries in by_tenant.items():
        add_entries(store, entries, tenant)


def random_filters(rng: random.Random, lo_ms: int, hi_ms: int) -> Filters:
    """A window inside or around [lo_ms, hi_ms]: edges mostly not minute-aligned, sometimes aligned to a minute's
    first or last millisecond, sometimes shorter than a minute or inside one."""
    start = rng.randint(lo_ms - 5 * MINUTE, hi_ms)
    length = rng.choice((rng.randint(0, 2 * MINUTE), rng.randint(MINUTE, hi_ms - lo_ms + 10 * MINUTE)))
    end = start + length
    if rng.random() < 0.3:
        start = start // MINUTE * MINUTE + rng.choice((-1, 0, 1))
    if rng.random() < 0.3:
        end = end // MINUTE * MINUTE + rng.choice((-2, -1, 0))
    end = max(start, end)
    return Filters(tenant=rng.choice(TENANTS), source=rng.choice((None, None, *CONTAINERS, "nope")),
                   stream=rng.choice((None, None, "stdout", "stderr")), from_ms=start, to_ms=end)


class Oracle:
    """Expected results counted in Python from every row of `logs` (read on a connection of its own)."""

    def __init__(self, path: str, *, rollup: bool = True) -> None:
        conn = connect(path, readonly=True)
        try:
            self.rows = conn.execute("SELECT l.ts, l.tenant, s.source, s.stream FROM logs l "
                                     "JOIN streams s ON s.id = l.sid").fetchall()
            self.rollup = {(t, m, sid): n for t, m, sid, n in conn.execute(
                "SELECT tenant, minute, sid, n FROM minute_counts").fetchall()} if rollup else {}
            logs = conn.execute("SELECT ts, tenant, sid, id FROM logs").fetchall()
            self.per_minute = Counter((t, ts // MINUTE, sid) for ts, t, sid, _ in logs)
            self.per_slot = Counter((t, ts // SLOT_MS, sid) for ts, t, sid, _ in logs)
            self.slots = {(t, m, sid): n for t, m, sid, n in conn.execute(
                "SELECT tenant, slot, sid, n FROM slot_counts").fetchall()} if rollup else {}
            self.ids: dict[tuple[str, int, int], list[int]] = {}
            for ts, t, sid, rid in logs:
                self.ids.setdefault((t, ts // MINUTE, sid), []).append(rid)
            self.bounds = {(t, m, sid): (lo, hi) for t, m, sid, lo, hi in conn.execute(
                "SELECT tenant, minute, sid, lo_id, hi_id FROM minute_counts").fetchall()} if rollup else {}
        finally:
            conn.close()

    def matching(self, f: Filters) -> list[int]:
        return [ts for ts, tenant, source, stream in self.rows
                if tenant == f.tenant and f.from_ms <= ts <= f.to_ms
                and f.source in (None, source) and f.stream in (None, stream)]

    def histogram(self, f: Filters, bucket: int) -> tuple[list[dict[str, int]], int]:
        stamps = self.matching(f)
        # SQL's (ts / bucket) * bucket: truncated toward zero (it differs from floor before 1970 only).
        counts = Counter(ts // bucket * bucket if ts >= 0 else -(-ts // bucket * bucket) for ts in stamps)
        first = f.from_ms // bucket * bucket
        return [{"timestamp": b, "count": counts.get(b, 0)} for b in range(first, f.to_ms + 1, bucket)], len(stamps)


def check(store: LogStore, rng: random.Random, lo_ms: int, hi_ms: int, windows: int = 150,
          rollup_share: float = 0.25) -> None:
    """The per-minute counts equal a GROUP BY over `logs`; random histograms and counts, through the per-minute
    counts and through the exact count, equal the oracle's."""
    oracle = Oracle(store.path)
    assert oracle.rollup == dict(oracle.per_minute)  # in step, and no minute left at 0
    assert oracle.slots == dict(oracle.per_slot)  # the same for the 5 s slots
    for key, ids in oracle.ids.items():  # each minute's id bounds hold every id it has
        lo, hi = oracle.bounds[key]
        assert lo <= min(ids) and max(ids) <= hi, key
    assert oracle.rows, "nothing to compare"
    cases = [(random_filters(rng, lo_ms, hi_ms), rng.choice(BUCKETS)) for _ in range(windows)]
    # Whole-window cases too: every bucket size over all the data, per tenant.
    cases += [(Filters(tenant=t, from_ms=lo_ms - 1, to_ms=hi_ms + 1), b) for t in TENANTS for b in BUCKETS]

    async def compare() -> int:
        via_rollup = 0
        for f, bucket in cases:
            want = oracle.histogram(f, bucket)
            store.USE_ROLLUP = True
            via_rollup += bucket % MINUTE == 0 and store._rollup(store._conn(), f) is not None
            got = await store.histogram(f, bucket)
            total = await store.count(f)
            store.USE_ROLLUP = False
            exact = await store.histogram(f, bucket)
            exact_total = await store.count(f)
            assert got == want == exact, (f, bucket)
            assert total == exact_total == want[1], (f, bucket)
        store.USE_ROLLUP = True
        return via_rollup

    assert run(compare(), timeout=60) >= rollup_share * len(cases)  # the per-minute path is really exercised
    unbounded = [Filters(tenant=t, source=s) for t in TENANTS for s in (None, *CONTAINERS)]
    for f in unbounded:
        want = sum(1 for _, tenant, source, _ in oracle.rows if tenant == f.tenant and f.source in (None, source))
        assert run(store.count(f)) == want
        assert run(store.search(f, 1))[0] == want


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


def logs_count(path: str) -> int:
    conn = connect(path, readonly=True)
    try:
        return conn.execute("SELECT count(*) FROM logs").fetchone()[0]
    finally:
        conn.close()


def test_rollup_histograms_equal_group_by_after_writes(tmp_path):
    rng = random.Random(7)
    store = make_store(tmp_path)
    try:
        start = now_ms() - 3 * HOUR + 12_345  # not on a minute
        # Three writes over the same span: later transactions add to minutes earlier ones created.
        for _ in range(3):
            add_all(store, random_entries(rng, start, 3 * HOUR, 1_500))
            check(store, rng, start, start + 3 * HOUR)
        # Text and word filters are not answered from the per-minute counts.
        conn = store._conn()
        for f in (Filters(query="line", from_ms=start, to_ms=start + HOUR), Filters(query=" ; ", from_ms=start,
                  to_ms=start + HOUR), Filters(any_words=("line",), from_ms=start, to_ms=start + HOUR)):
            assert store._rollup(conn, f) is None
        assert store._rollup(conn, Filters(query="  ", from_ms=start, to_ms=start + HOUR)) is not None
    finally:
        store.close()


def test_rollup_stays_exact_after_retention_by_age(tmp_path):
    """Retention deletes the oldest rows in chunks, splitting minutes: each lowers its minutes exactly."""
    rng = random.Random(11)
    store = make_store(tmp_path, retention=2 * 3600.0, retention_interval=0.1)
    try:
        start = now_ms() - 3 * HOUR + 7_777
        entries = random_entries(rng, start, 3 * HOUR, 3_000)
        total = sum(map(len, entries.values()))
        add_all(store, entries)
        wait_for(lambda: store.retention.deleted["age"] > 0 and logs_count(store.path) < total, what="age deletes")
        store.writer.stop()  # nothing changes from here on
        remaining = logs_count(store.path)
        assert 0 < remaining < total and remaining + store.retention.deleted["age"] == total
        check(store, rng, start, start + 3 * HOUR)
    finally:
        store.close()


def test_rollup_stays_exact_after_retention_by_size(tmp_path):
    rng = random.Random(13)
    store = make_store(tmp_path, max_size="1MiB", retention_interval=0.05)
    try:
        start = now_ms() - 2 * HOUR + 31_415
        entries = random_entries(rng, start, 2 * HOUR, 2_500)
        for tenant_entries in entries.values():
            for e in tenant_entries:
                e.line += " " + "padding " * 30
        total = sum(map(len, entries.values()))
        add_all(store, entries)
        wait_for(lambda: store.retention.deleted["size"] > 0 and logs_count(store.path) < total, 60,
                 what="size deletes")
        store.writer.stop()
        remaining = logs_count(store.path)
        assert 0 < remaining < total and remaining + store.retention.deleted["size"] == total
        check(store, rng, start, start + 2 * HOUR)
    finally:
        store.close()


V1_MINUTE_COUNTS = """CREATE TABLE minute_counts (tenant TEXT NOT NULL, minute INTEGER NOT NULL, sid INTEGER NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (tenant, minute, sid)) WITHOUT ROWID"""


@pytest.mark.parametrize("version", [0, 1])
def test_older_database_is_backfilled_on_open(tmp_path, version):
    """A store written by an older layout opens: version 0 had no count tables, version 1 per-minute counts
    without id bounds, no slots and no vocabulary. The writer rebuilds them from `logs`."""
    rng = random.Random(17)
    start = now_ms() - 2 * HOUR + 999
    store = make_store(tmp_path)
    try:
        add_all(store, random_entries(rng, start, 2 * HOUR, 2_000))
        path = store.path
    finally:
        store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("minute_counts", "slot_counts", "logs_vocab"):
        conn.execute(f"DROP TABLE {table}")
    if version == 1:
        conn.execute(V1_MINUTE_COUNTS)
        conn.execute("INSERT INTO minute_counts SELECT tenant, ts / 60000, sid, count(*) FROM logs "
                     "GROUP BY 1, 2, 3")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()

    # Until the writer has built the table, reads count exactly from `logs`.
    old = LogStore(SearchConfig(), str(tmp_path / "search"))
    try:
        oracle = Oracle(path, rollup=False)
        f = Filters(from_ms=start - 1, to_ms=start + 2 * HOUR)
        assert old._rollup(old._conn(), f) is None
        assert old._histogram(f, 300_000) == oracle.histogram(f, 300_000)
    finally:
        old.close()

    store = make_store(tmp_path)
    try:
        def version() -> int:
            reader = connect(path, readonly=True)
            try:
                return reader.execute("PRAGMA user_version").fetchone()[0]
            finally:
                reader.close()

        wait_for(lambda: version() == SCHEMA_VERSION, what="backfill")
        check(store, rng, start, start + 2 * HOUR)
        add_all(store, random_entries(rng, start, 2 * HOUR, 500))  # raised on top of the backfill
        check(store, rng, start, start + 2 * HOUR)
    finally:
        store.close()


def test_timestamps_around_the_epoch(tmp_path):
    """A minute is floor(ts / 60 000) before 1970 too; windows reaching before it keep the exact count (SQL
    truncates their buckets toward zero), totals over them still use the per-minute counts."""
    rng = random.Random(19)
    store = make_store(tmp_path, retention=0)  # no retention by age: these are old
    try:
        add_all(store, random_entries(rng, -5 * MINUTE - 333, 10 * MINUTE, 400))
        check(store, rng, -5 * MINUTE, 5 * MINUTE, rollup_share=0.05)
        conn = store._conn()
        assert store._rollup(conn, Filters(from_ms=-3 * MINUTE - 1, to_ms=3 * MINUTE)) is not None
    finally:
        store.close()
    store = make_store(tmp_path, retention=3600.0, retention_interval=0.1)  # now all of them are too old
    try:
        wait_for(lambda: logs_count(store.path) == 0, what="everything deleted by age")
        store.writer.stop()
        oracle = Oracle(store.path)
        assert oracle.rollup == {} and not oracle.rows
    finally:
        store.close()
