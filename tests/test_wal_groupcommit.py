"""Group commit: few fsyncs for many durable appends, and the event loop never waits on an fsync."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from service.wal import WAL, read_records
from tests.helpers.wal_helpers import metric, payload


def test_concurrent_durable_appends_share_fsyncs(tmp_path):
    writers, per_writer = 16, 50

    async def writer(wal, w):
        out = []
        for i in range(per_writer):
            out.append((await wal.append_durable(1, payload(w * 1000 + i)), w * 1000 + i))
        return out

    async def main():
        wal = WAL.open(str(tmp_path), sync_interval=0.002, instance="gc-share")
        results = await asyncio.gather(*(writer(wal, w) for w in range(writers)))
        fsyncs = wal.fsync_count
        await wal.aclose()
        return [p for r in results for p in r], fsyncs

    acked, fsyncs = asyncio.run(main())
    total = writers * per_writer
    assert len(acked) == total
    # 16 appenders in a closed loop: each fsync covers about one record of each appender
    assert fsyncs <= total / 6, f"{fsyncs} fsyncs for {total} records"
    by_pos = {r.position: r.payload for r in read_records(str(tmp_path))}
    assert all(by_pos[pos] == payload(i) for pos, i in acked)
    assert metric("agent_wal_records_appended_total", "gc-share") == total
    assert metric("agent_wal_fsync_duration_seconds_count", "gc-share") == fsyncs


def test_burst_is_covered_by_a_handful_of_fsyncs(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), sync_interval=0.005, instance="gc-burst")
        await asyncio.gather(*(wal.append_durable(2, payload(i)) for i in range(2000)))
        fsyncs = wal.fsync_count
        await wal.aclose()
        return fsyncs

    fsyncs = asyncio.run(main())
    assert 1 <= fsyncs <= 5
    assert len(list(read_records(str(tmp_path)))) == 2000


def test_loop_keeps_running_while_fsync_is_slow(tmp_path):
    """A 300 ms fsync (a slow disk) must not stall appends or other tasks on the loop."""
    in_fsync = threading.Event()
    release = threading.Event()

    def slow_fsync(fd):
        in_fsync.set()
        release.wait(5)
        os.fdatasync(fd)

    async def main():
        wal = WAL.open(str(tmp_path), instance="gc-slow")
        wal._file.fsync = slow_fsync
        first = asyncio.ensure_future(wal.append_durable(1, b"first"))
        await asyncio.to_thread(in_fsync.wait, 5)
        started = time.perf_counter()
        positions = [wal.append(1, payload(i)) for i in range(1000)]
        await asyncio.sleep(0)  # other tasks still get turns
        elapsed = time.perf_counter() - started
        assert not first.done()
        release.set()
        await first
        await wal.sync_barrier()
        await wal.aclose()
        return elapsed, positions

    elapsed, positions = asyncio.run(main())
    # The fsync is held until release (up to 5 s): appends that waited for it would take that long. The bound
    # leaves room for a loaded machine; it is not a speed figure (bench/wal_append.py measures those).
    assert elapsed < 2.0, f"1000 appends took {elapsed:.3f}s while an fsync was in progress"
    assert len(list(read_records(str(tmp_path)))) == 1001
    assert len(set(positions)) == 1000


def test_sync_barrier_and_blocking_sync(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), instance="gc-barrier")
        before = wal.fsync_count
        end = await wal.sync_barrier()  # nothing pending: no fsync needed
        assert wal.fsync_count == before
        pos = wal.append(3, b"abc")
        end = await wal.sync_barrier()
        assert end >= pos and wal.durable_position >= pos
        await wal.aclose()

    asyncio.run(main())
    wal = WAL.open(str(tmp_path), instance="gc-barrier")
    pos = wal.append(3, b"from a thread")
    assert wal.sync(timeout=5) > pos
    wal.close()
    assert [r.payload for r in read_records(str(tmp_path))] == [b"abc", b"from a thread"]


def _staggered(directory: str, linger: float, count: int = 40, gap: float = 0.01) -> tuple[list, int, float]:
    """`count` appenders, one every `gap` seconds, each awaiting its own record's durability (as scrape
    loops do): their positions, the fsyncs taken and the seconds it all took."""

    async def one(wal: WAL, i: int):
        await asyncio.sleep(i * gap)
        return await wal.append_durable(1, payload(i), linger=linger)

    async def main():
        wal = WAL.open(directory, sync_interval=0.001, instance="gc-linger")
        start = time.monotonic()
        positions = await asyncio.gather(*(one(wal, i) for i in range(count)))
        elapsed = time.monotonic() - start
        fsyncs = wal.fsync_count
        await wal.aclose()
        return positions, fsyncs, elapsed

    return asyncio.run(main())


def test_lingering_appends_share_fsyncs_and_write_what_plain_appends_write(tmp_path):
    """Appenders spread in time take one fsync per linger between them, not one each, and the WAL holds
    the same records at the same positions as with plain durable appends."""
    plain_pos, _, _ = _staggered(str(tmp_path / "plain"), 0.0)
    linger = 0.15
    lingered_pos, fsyncs, elapsed = _staggered(str(tmp_path / "linger"), linger)
    assert lingered_pos == plain_pos
    assert fsyncs <= elapsed / linger + 2, f"{fsyncs} fsyncs in {elapsed:.2f}s"
    plain = [(r.position, r.payload) for r in read_records(str(tmp_path / "plain"))]
    lingered = [(r.position, r.payload) for r in read_records(str(tmp_path / "linger"))]
    assert lingered == plain and len(plain) == 40


def test_a_lingering_record_waits_its_linger_and_no_more(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), instance="gc-linger-alone")
        start = time.monotonic()
        await asyncio.wait_for(wal.append_durable(1, b"scraped", linger=0.3), 30)
        waited = time.monotonic() - start
        await wal.aclose()
        return waited

    assert asyncio.run(main()) >= 0.3


def test_an_append_without_linger_a_barrier_or_close_bring_a_lingering_fsync_forward(tmp_path):
    """A record lingering for a minute is made durable at once by a plain durable append after it, by a
    sync barrier and by close: whoever waits on an answer never waits for someone else's linger."""

    async def main():
        wal = WAL.open(str(tmp_path), instance="gc-linger-forward")
        lingering = asyncio.ensure_future(wal.append_durable(1, b"a", linger=60))
        await asyncio.sleep(0.05)
        assert not lingering.done()
        await asyncio.wait_for(wal.append_durable(1, b"b"), 20)
        await asyncio.wait_for(lingering, 20)
        pos = wal.append(1, b"c", linger=60)
        assert await asyncio.wait_for(wal.sync_barrier(), 20) > pos
        wal.append(1, b"d", linger=60)
        start = time.monotonic()
        await wal.aclose()
        return time.monotonic() - start

    assert asyncio.run(main()) < 30
    assert [r.payload for r in read_records(str(tmp_path))] == [b"a", b"b", b"c", b"d"]
