"""Batched WAL opens and closes (``WAL.aopen``, ``aclose``, ``batch_io``) against the plain ``WAL.open`` /
``close``: the same directories, segments, positions and records, errors handed to their own caller, and a
WAL opened for a cancelled caller closed."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from service.wal import WAL, WALError, read_records
from service.wal.batch_io import run_batched
from tests.helpers.wal_helpers import payload, segment_files


def _state(wal: WAL) -> tuple[int, object]:
    return wal.current_segment, wal.durable_position


def test_aopen_matches_open_for_new_missing_parent_and_existing_dirs(tmp_path):
    """New directory (the mkdir fast path), a missing parent, and an existing WAL with records: the batched
    open leaves the same files and state as the plain one, and appends land after the old records."""

    async def main() -> None:
        for sub in ("new", "deep/er/new"):
            plain = WAL.open(str(tmp_path / "plain" / sub), instance="p")
            fast = await WAL.aopen(str(tmp_path / "fast" / sub), instance="f")
            assert _state(fast) == _state(plain)
            assert segment_files(fast.directory) == segment_files(plain.directory) == ["00000001"]
            for wal in (plain, fast):
                await wal.append_durable(1, payload(1, 50))
                await wal.aclose()
        # existing WALs with a record: both reopen after it, in a new segment
        for side in ("plain", "fast"):
            directory = str(tmp_path / side / "new")
            wal = WAL.open(directory, instance="p") if side == "plain" else await WAL.aopen(directory, instance="f")
            assert wal.current_segment == 2
            await wal.append_durable(1, payload(2, 50))
            await wal.aclose()
        plain_records = [(r.position, r.payload) for r in read_records(str(tmp_path / "plain" / "new"))]
        fast_records = [(r.position, r.payload) for r in read_records(str(tmp_path / "fast" / "new"))]
        assert plain_records == fast_records
        assert [p for _, p in fast_records] == [payload(1, 50), payload(2, 50)]

    asyncio.run(main())


def test_many_concurrent_aopens_each_get_their_own_wal(tmp_path):
    async def main() -> None:
        wals = await asyncio.gather(*(WAL.aopen(str(tmp_path / f"w{i}"), instance=f"w{i}") for i in range(300)))
        assert len({id(w) for w in wals}) == 300
        assert [w.directory for w in wals] == [str(tmp_path / f"w{i}") for i in range(300)]
        await asyncio.gather(*(w.append_durable(1, payload(i, 20)) for i, w in enumerate(wals)))
        await asyncio.gather(*(w.aclose() for w in wals))
        assert all(w.closed for w in wals)
        for i in range(300):
            assert [r.payload for r in read_records(str(tmp_path / f"w{i}"))] == [payload(i, 20)]

    asyncio.run(main())


def test_a_failing_open_fails_only_its_caller(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")

    async def main() -> None:
        results = await asyncio.gather(
            WAL.aopen(str(tmp_path / "ok1"), instance="a"),
            WAL.aopen(str(blocker / "wal"), instance="b"),  # a file where a directory should be
            WAL.aopen(str(tmp_path / "ok2"), instance="c"),
            return_exceptions=True)
        assert isinstance(results[1], WALError)
        assert isinstance(results[0], WAL) and isinstance(results[2], WAL)
        await results[0].aclose()
        await results[2].aclose()

    asyncio.run(main())


def test_cancelled_caller_gets_its_result_discarded():
    """The waiter gives up while its call runs: the result goes to ``discard`` (a WAL would be closed)."""
    started, release = threading.Event(), threading.Event()
    discarded: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(30)
        return "opened"

    async def main() -> None:
        task = asyncio.ensure_future(run_batched(slow, discard=discarded.append))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await run_batched(lambda: "next") == "next"  # the worker moved on
        for _ in range(3000):
            if discarded:
                break
            await asyncio.sleep(0.01)
        assert discarded == ["opened"]

    asyncio.run(main())


def test_aclose_of_a_wal_with_pending_records_makes_them_durable(tmp_path):
    async def main() -> None:
        wal = await WAL.aopen(str(tmp_path / "w"), instance="w", sync_interval=0.5)
        first = await wal.append_durable(1, payload(0, 10))  # the next fsync is paced 0.5 s later
        wal.append(1, payload(1, 10))
        await wal.aclose()  # has a flush to wait for: its own thread, not the batch
        return first

    asyncio.run(main())
    assert [r.payload for r in read_records(str(tmp_path / "w"))] == [payload(0, 10), payload(1, 10)]
    assert os.path.isdir(tmp_path / "w")
