"""The live tail: follows durable appends across segments, wakes promptly, never reads past an fsync."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from service.wal import WAL, Position, WALTail
from service.wal.segment import segment_path
from tests.helpers.wal_helpers import payload


def test_tail_follows_durable_appends_across_segments(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), segment_size=1500, sync_interval=0.001, instance="tail-follow")
        tail = WALTail(wal)
        got: list = []

        async def consume():
            async for rec in tail:
                got.append(rec)

        consumer = asyncio.create_task(consume())
        acked = []
        for i in range(100):
            acked.append(await wal.append_durable(1, payload(i, 200)))
        deadline = time.monotonic() + 5
        while len(got) < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        await wal.aclose()  # ends the iteration once everything durable was read
        await asyncio.wait_for(consumer, 5)
        return acked, got, tail

    acked, got, tail = asyncio.run(main())
    assert [r.position for r in got] == acked
    assert [r.payload for r in got] == [payload(i, 200) for i in range(100)]
    assert acked[-1].segment > 5
    assert tail.position == got[-1].end


def test_tail_wakes_promptly(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), sync_interval=0.005, instance="tail-wake")
        tail = WALTail(wal)
        latencies = []
        for i in range(20):
            waiter = asyncio.ensure_future(tail.next_batch())
            await asyncio.sleep(0)
            assert not waiter.done()  # caught up: it waits
            started = time.perf_counter()
            await wal.append_durable(1, payload(i))
            batch = await asyncio.wait_for(waiter, 5)
            latencies.append(time.perf_counter() - started)
            assert [r.payload for r in batch] == [payload(i)]
        tail.close()
        await wal.aclose()
        return sorted(latencies)

    latencies = asyncio.run(main())
    assert latencies[len(latencies) // 2] < 0.05, latencies


def test_tail_never_hands_out_records_before_their_fsync(tmp_path):
    in_fsync = threading.Event()
    release = threading.Event()

    def gated_fsync(fd):
        in_fsync.set()
        release.wait(5)
        os.fdatasync(fd)

    async def main():
        wal = WAL.open(str(tmp_path), instance="tail-durable")
        first = await wal.append_durable(1, b"durable")
        tail = WALTail(wal)
        assert [r.payload for r in tail.read_available()] == [b"durable"]
        wal._file.fsync = gated_fsync
        pos = wal.append(1, b"written, not yet synced")
        await asyncio.to_thread(in_fsync.wait, 5)
        # the bytes are in the file, but no fsync covers them yet
        assert os.path.getsize(segment_path(str(tmp_path), pos.segment)) > pos.offset
        assert tail.read_available() == []
        waiter = asyncio.ensure_future(tail.next_batch())
        await asyncio.sleep(0)
        assert not waiter.done()
        release.set()
        batch = await asyncio.wait_for(waiter, 5)
        tail.close()
        await wal.aclose()
        return first, pos, batch

    _first, pos, batch = asyncio.run(main())
    assert [r.position for r in batch] == [pos]


def test_tail_from_a_marker_position_and_close_ends_iteration(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), segment_size=1024, instance="tail-start")
        positions = [await wal.append_durable(2, payload(i, 150)) for i in range(12)]
        tail = WALTail(wal, positions[5])
        batch = await tail.next_batch(max_records=3)
        assert [r.position for r in batch] == positions[5:8]
        batch = await tail.next_batch(max_bytes=1)
        assert [r.position for r in batch] == [positions[8]]
        rest = await tail.next_batch()
        assert [r.position for r in rest] == positions[9:]
        pending = asyncio.ensure_future(tail.next_batch())
        await asyncio.sleep(0)
        tail.close()
        assert await asyncio.wait_for(pending, 5) == []
        await wal.aclose()

    asyncio.run(main())


def test_tail_skips_segments_deleted_under_it(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), segment_size=1024, instance="tail-skip")
        positions = [await wal.append_durable(1, payload(i, 300)) for i in range(12)]
        tail = WALTail(wal, Position(1, 0))
        # max_wal_time expired everything but the segment being written
        wal.truncate(0, 1, [Position(1, 0)], now_ms=time.time_ns() // 1_000_000 + 10_000)
        batch = await tail.next_batch()
        tail.close()
        await wal.aclose()
        return positions, batch, tail

    positions, batch, tail = asyncio.run(main())
    assert tail.skipped_segments == 1
    assert batch and batch[0].position == Position(positions[-1].segment, 0)
