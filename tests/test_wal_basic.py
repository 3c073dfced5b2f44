"""Round trips, rollover, framing and directory naming."""

from __future__ import annotations

import asyncio
import os

import pytest

from service.wal import WAL, Position, WALError, read_records, safe_name, wal_dir_for
from service.wal.record import HEADER_SIZE
from tests.helpers.wal_helpers import payload, segment_files


def test_round_trip_across_segment_rollover(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), segment_size=2048, instance="basic-rt")
        positions = []
        for i in range(200):
            positions.append(wal.append(1 + i % 3, payload(i, 10 + i * 7 % 300)))
        await wal.sync_barrier()
        await wal.aclose()
        return positions

    positions = asyncio.run(main())
    records = list(read_records(str(tmp_path)))
    assert [r.position for r in records] == positions
    assert [r.payload for r in records] == [payload(i, 10 + i * 7 % 300) for i in range(200)]
    assert [r.type for r in records] == [1 + i % 3 for i in range(200)]
    assert len(segment_files(str(tmp_path))) > 10
    for name in segment_files(str(tmp_path)):
        assert os.path.getsize(tmp_path / name) <= 2048
    # a record bigger than a segment gets one to itself
    async def big():
        wal = WAL.open(str(tmp_path), segment_size=2048, instance="basic-rt")
        pos = await wal.append_durable(2, b"B" * 5000)
        after = await wal.append_durable(2, b"small")
        await wal.aclose()
        return pos, after

    pos, after = asyncio.run(big())
    assert pos.offset == 0 and after == Position(pos.segment + 1, 0)
    tail = list(read_records(str(tmp_path), pos))
    assert [r.payload for r in tail] == [b"B" * 5000, b"small"]


def test_read_from_position_and_record_end(tmp_path):
    wal = WAL.open(str(tmp_path), segment_size=1024, instance="basic-pos")
    positions = [wal.append(1, payload(i, 200)) for i in range(20)]
    wal.sync()
    wal.close()
    records = list(read_records(str(tmp_path), positions[7]))
    assert records[0].position == positions[7]
    assert [r.payload for r in records] == [payload(i, 200) for i in range(7, 20)]
    assert records[0].end.offset == positions[7].offset + HEADER_SIZE + 200


def test_cut_starts_new_segment_and_reopen_starts_fresh(tmp_path):
    async def main():
        wal = WAL.open(str(tmp_path), instance="basic-cut")
        a = await wal.append_durable(1, b"a")
        wal.cut()
        wal.cut()  # no-op on an empty segment
        b = await wal.append_durable(1, b"b")
        await wal.aclose()
        wal = WAL.open(str(tmp_path), instance="basic-cut")
        c = await wal.append_durable(1, b"c")
        await wal.aclose()
        return a, b, c

    a, b, c = asyncio.run(main())
    assert (a.segment, b.segment, c.segment) == (1, 2, 3)
    assert [r.payload for r in read_records(str(tmp_path))] == [b"a", b"b", b"c"]


def test_closed_wal_refuses_appends_and_bad_types(tmp_path):
    wal = WAL.open(str(tmp_path), instance="basic-closed")
    with pytest.raises(ValueError):
        wal.append(0, b"x")
    with pytest.raises(ValueError):
        wal.append(256, b"x")
    wal.close()
    wal.close()
    with pytest.raises(WALError):
        wal.append(1, b"x")


def test_open_on_unusable_path_raises_walerror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(WALError):
        WAL.open(str(blocker / "wal"), instance="basic-bad")


@pytest.mark.parametrize(
    "name",
    ["plain", "a/b", "..", "../../etc", "%00", "x\x00y", "ünïcødé-名前", "", ".hidden", "a" * 500, "\ud800"],
)
def test_wal_dir_for_stays_under_root(tmp_path, name):
    root = str(tmp_path)
    path = wal_dir_for(root, name)
    assert os.path.dirname(path) == os.path.abspath(root)
    base = os.path.basename(path)
    assert base not in (".", "..") and not base.startswith(".")
    assert "/" not in base and "\x00" not in base and len(base) <= 60
    assert base.isascii()
    assert wal_dir_for(root, name) == path  # deterministic


def test_safe_names_differ_for_names_that_sanitize_alike():
    names = ["a/b", "a_b", "a:b", "a b", "A/b"]
    assert len({safe_name(n) for n in names}) == len(names)
    assert safe_name("node-1.example").startswith("node-1.example-")
