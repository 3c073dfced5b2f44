"""A torn or corrupt tail is cut on open, counted, and appending goes on."""

from __future__ import annotations

import asyncio
import os

import pytest

from service.wal import WAL, read_records
from service.wal.record import HEADER_SIZE
from service.wal.segment import segment_path
from tests.helpers.wal_helpers import metric, payload


def _write(directory: str, n: int, instance: str) -> list:
    wal = WAL.open(directory, instance=instance)
    positions = [wal.append(1, payload(i, 300)) for i in range(n)]
    wal.sync()
    wal.close()
    return positions


def _damage_torn_payload(path: str, last) -> None:
    os.truncate(path, last.offset + HEADER_SIZE + 120)


def _damage_torn_header(path: str, last) -> None:
    os.truncate(path, last.offset + 5)


def _damage_crc(path: str, last) -> None:
    with open(path, "r+b") as f:
        f.seek(last.offset + HEADER_SIZE + 50)
        byte = f.read(1)
        f.seek(last.offset + HEADER_SIZE + 50)
        f.write(bytes([byte[0] ^ 0xFF]))


def _damage_zero_fill(path: str, last) -> None:
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # what a crash can leave after a file was extended but not written


@pytest.mark.parametrize(
    "damage", [_damage_torn_payload, _damage_torn_header, _damage_crc, _damage_zero_fill]
)
def test_damaged_tail_is_cut_counted_and_appends_continue(tmp_path, damage):
    instance = f"repair-{damage.__name__}"
    d = str(tmp_path)
    positions = _write(d, 10, instance)
    last = positions[-1]
    path = segment_path(d, last.segment)
    damage(path, last)
    before = metric("agent_wal_corruptions_total", instance)

    async def reopen():
        wal = WAL.open(d, instance=instance)
        pos = await wal.append_durable(2, b"after repair")
        await wal.aclose()
        return pos

    new_pos = asyncio.run(reopen())
    assert metric("agent_wal_corruptions_total", instance) == before + 1
    keep = 10 if damage is _damage_zero_fill else 9
    expected_size = last.offset + HEADER_SIZE + 300 if keep == 10 else last.offset
    assert os.path.getsize(path) == expected_size
    records = list(read_records(d))
    assert [r.payload for r in records] == [payload(i, 300) for i in range(keep)] + [b"after repair"]
    assert records[-1].position == new_pos and new_pos.segment == last.segment + 1


def test_clean_reopen_counts_nothing(tmp_path):
    d = str(tmp_path)
    _write(d, 5, "repair-clean")
    before = metric("agent_wal_corruptions_total", "repair-clean")
    WAL.open(d, instance="repair-clean").close()
    assert metric("agent_wal_corruptions_total", "repair-clean") == before
    assert len(list(read_records(d))) == 5


def test_empty_last_segment_is_reused(tmp_path):
    d = str(tmp_path)
    WAL.open(d, instance="repair-empty").close()
    WAL.open(d, instance="repair-empty").close()
    assert sorted(os.listdir(d)) == ["00000001"]


def test_reader_skips_corruption_in_an_older_segment(tmp_path):
    """Damage that open() does not look at (an old segment) ends that segment for readers only."""
    d = str(tmp_path)
    wal = WAL.open(d, segment_size=1024, instance="repair-old")
    positions = [wal.append(1, payload(i, 200)) for i in range(30)]
    wal.sync()
    wal.close()
    seg1 = [p for p in positions if p.segment == 1]
    _damage_crc(segment_path(d, 1), seg1[1])
    records = list(read_records(d))
    assert [r.payload for r in records[:1]] == [payload(0, 200)]
    assert records[1].position.segment == 2
    assert len(records) == 30 - (len(seg1) - 1)
