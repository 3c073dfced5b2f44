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
    assert elapsed < 0.1, f"1000 appends took {elapsed:.3f}s while an fsync was in progress"
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
