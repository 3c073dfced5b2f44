"""Failed writes and fsyncs: every waiter gets WALError, nothing half-written stays, appends go on."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from service.wal import WAL, WALError, WALReader, WALTail, read_records
from service.wal.record import HEADER_SIZE
from service.wal.segment import segment_path
from tests.helpers.tmpfs import mounted_tmpfs
from tests.helpers.wal_helpers import metric, payload


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs, so writes really fail with ENOSPC (needs root and mount; skipped otherwise)."""
    with mounted_tmpfs(tmp_path / "mnt", "256k") as mnt:
        yield str(mnt)


def test_disk_full_fails_cleanly_and_recovers(small_tmpfs):
    instance = "faults-enospc"
    d = os.path.join(small_tmpfs, "wal")
    filler = os.path.join(small_tmpfs, "filler")

    async def main():
        wal = WAL.open(d, instance=instance)
        acked = [(await wal.append_durable(1, payload(i, 1000)), i) for i in range(5)]
        with open(filler, "wb") as f:  # leave less than 64 KiB free
            try:
                f.write(b"\0" * (256 << 10))
            except OSError as e:
                assert e.errno == errno.ENOSPC
        with open(filler, "r+b") as f:
            f.truncate(os.path.getsize(filler) - (40 << 10))
        failed_before = metric("agent_wal_writes_failed_total", instance)
        results = await asyncio.gather(
            *(wal.append_durable(1, payload(100 + i, 8000)) for i in range(20)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        acked += [(r, 100 + i) for i, r in enumerate(results) if not isinstance(r, BaseException)]
        assert errors, "a full disk must fail some appends"
        assert all(isinstance(e, WALError) and e.errno == errno.ENOSPC for e in errors)
        assert metric("agent_wal_writes_failed_total", instance) > failed_before
        # nothing half-written: the segment ends exactly after the last durable record
        seg = wal.durable_position
        assert os.path.getsize(segment_path(d, seg.segment)) == seg.offset
        with pytest.raises(WALError):
            await wal.append_durable(1, payload(999, 60000))
        os.unlink(filler)
        after = await wal.append_durable(2, b"space is back")
        await wal.aclose()
        return acked, after

    acked, after = asyncio.run(main())
    reader = WALReader(d)
    by_pos = {r.position: r.payload for r in reader}
    assert reader.corruptions == []
    for pos, i in acked:
        assert by_pos[pos] == payload(i, 1000 if i < 100 else 8000)
    assert by_pos[after] == b"space is back"
    assert len(by_pos) == len(acked) + 1
    before = metric("agent_wal_corruptions_total", instance)
    WAL.open(d, instance=instance).close()
    assert metric("agent_wal_corruptions_total", instance) == before


def test_fsync_error_fails_every_waiter_and_truncates(tmp_path):
    d = str(tmp_path)

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    async def main():
        wal = WAL.open(d, instance="faults-eio")
        good = await wal.append_durable(1, b"good")
        wal._file.fsync = eio
        results = await asyncio.gather(
            *(wal.append_durable(1, payload(i)) for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, WALError) and r.errno == errno.EIO for r in results)
        assert os.path.getsize(segment_path(d, good.segment)) == good.offset + HEADER_SIZE + 4
        wal.append(1, b"not durable")
        with pytest.raises(WALError):
            await wal.sync_barrier()
        wal._file.fsync = os.fdatasync
        later = await wal.append_durable(1, b"later")
        await wal.aclose()
        return good, later

    good, later = asyncio.run(main())
    records = list(read_records(d))
    assert [(r.position, r.payload) for r in records] == [(good, b"good"), (later, b"later")]
    assert later.offset == good.offset + HEADER_SIZE + 4  # the failed records' space was reclaimed


def test_short_write_then_error_leaves_no_partial_record(tmp_path):
    d = str(tmp_path)
    calls = {"n": 0}

    def short_then_fail(fd, buffers):
        calls["n"] += 1
        if calls["n"] == 1:
            return os.write(fd, bytes(buffers[0])[:7] if len(buffers[0]) > 7 else bytes(buffers[0]))
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main():
        wal = WAL.open(d, instance="faults-short")
        good = await wal.append_durable(1, b"good")
        wal._file.writev = short_then_fail
        with pytest.raises(WALError) as info:
            await wal.append_durable(1, payload(1, 5000))
        assert info.value.errno == errno.ENOSPC
        wal._file.writev = os.writev
        later = await wal.append_durable(1, b"later")
        await wal.aclose()
        return good, later

    good, later = asyncio.run(main())
    reader = WALReader(d)
    assert [r.payload for r in reader] == [b"good", b"later"]
    assert reader.corruptions == []
    assert later.offset == good.offset + HEADER_SIZE + 4


def test_failed_truncate_moves_to_a_new_segment(tmp_path, monkeypatch):
    """If even the truncate fails, writing goes on in a new segment and the failed record is never read."""
    d = str(tmp_path)

    def eio(*args):
        raise OSError(errno.EIO, "Input/output error")

    async def main():
        wal = WAL.open(d, instance="faults-trunc")
        tail = WALTail(wal)
        good = await wal.append_durable(1, b"good")
        wal._file.fsync = eio
        with monkeypatch.context() as m:
            m.setattr(os, "ftruncate", eio)
            with pytest.raises(WALError):
                await wal.append_durable(1, b"failed but left on disk")
        wal._file.fsync = os.fdatasync
        later = await wal.append_durable(1, b"later")
        seen = []
        while len(seen) < 2:
            seen += await asyncio.wait_for(tail.next_batch(), 5)
        assert tail.read_available() == []
        tail.close()
        await wal.aclose()
        return good, later, seen

    good, later, seen = asyncio.run(main())
    assert later.segment == good.segment + 1
    assert [r.payload for r in seen] == [b"good", b"later"]
    # the failed record's header was zeroed, so the next open cuts the leftover bytes
    before = metric("agent_wal_corruptions_total", "faults-trunc")
    WAL.open(d, instance="faults-trunc").close()
    assert metric("agent_wal_corruptions_total", "faults-trunc") == before + 1
    assert [r.payload for r in read_records(d)] == [b"good", b"later"]
