"""Progress markers survive reopen; retention deletes only what it may; wal-stats reads read-only."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from service.wal import WAL, Position, ProgressMarker, list_markers, read_records, wal_stats
from tests.helpers.wal_helpers import metric, payload, segment_files

HOUR_MS = 3_600_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_markers_survive_reopen_and_odd_names(tmp_path):
    d = str(tmp_path)
    wal = WAL.open(d, instance="marker-reopen")
    names = ["endpoint-a", "https://x/api/v1/push", "../../escape", "名前", ""]
    for i, name in enumerate(names):
        assert wal.marker(name).load() is None
        wal.marker(name).store(Position(i + 1, 100 * i))
    wal.marker("endpoint-a").store(Position(7, 42))  # replaced, not appended
    wal.close()
    wal = WAL.open(d, instance="marker-reopen")
    assert wal.marker("endpoint-a").load() == Position(7, 42)
    assert ProgressMarker(d, "名前").load() == Position(4, 300)
    assert list_markers(d) == {
        "endpoint-a": Position(7, 42),
        "https://x/api/v1/push": Position(2, 100),
        "../../escape": Position(3, 200),
        "名前": Position(4, 300),
        "": Position(5, 400),
    }
    wal.close()
    marker_dir = os.path.join(d, "markers")
    assert all(not n.endswith(".tmp") for n in os.listdir(marker_dir))
    assert all(os.path.dirname(p) == marker_dir for p in (ProgressMarker(d, n).path for n in names))


def test_unreadable_marker_loads_as_none(tmp_path):
    marker = ProgressMarker(str(tmp_path), "broken")
    marker.store(Position(1, 2))
    with open(marker.path, "wb") as f:
        f.write(b"{not json")
    assert marker.load() is None
    asyncio.run(marker.store_async(Position(3, 4)))
    assert marker.load() == Position(3, 4)


@pytest.fixture
def filled(tmp_path):
    """A WAL with 6+ full segments and the positions of all its records."""
    wal = WAL.open(str(tmp_path), segment_size=1024, instance=f"ret-{tmp_path.name}")
    positions = [wal.append(1, payload(i, 300)) for i in range(20)]
    wal.sync()
    yield wal, positions
    wal.close()


def _segments_of(positions):
    return sorted({p.segment for p in positions})


def test_retention_follows_the_slowest_consumer(filled):
    wal, positions = filled
    segs = _segments_of(positions)
    far_future = _now_ms() + HOUR_MS
    fast, slow = positions[-1], positions[7]  # slow is the start of a record in segment 3
    result = wal.truncate(0, 0, [fast, slow], now_ms=far_future)
    assert result.segments_deleted == [n for n in segs if n < slow.segment]
    assert result.dropped_records == 0
    remaining = list(read_records(wal.directory))
    assert remaining[0].position == Position(slow.segment, 0)
    assert [r.payload for r in remaining][-1] == payload(19, 300)


def test_retention_keeps_everything_for_a_consumer_without_marker(filled):
    wal, _positions = filled
    files = segment_files(wal.directory)
    result = wal.truncate(0, 0, [None], now_ms=_now_ms() + HOUR_MS)
    assert result.segments_deleted == [] and segment_files(wal.directory) == files


def test_retention_respects_min_wal_time(filled):
    wal, positions = filled
    files = segment_files(wal.directory)
    result = wal.truncate(HOUR_MS, 0, [positions[-1]])  # all consumed, but younger than an hour
    assert result.segments_deleted == [] and segment_files(wal.directory) == files


def test_retention_never_deletes_the_segment_being_written(filled):
    wal, _positions = filled
    end = wal.durable_position
    result = wal.truncate(0, 0, [end], now_ms=_now_ms() + HOUR_MS)
    assert wal.current_segment not in result.segments_deleted
    assert segment_files(wal.directory) == [f"{wal.current_segment:08d}"]
    pos = wal.append(1, b"still writable")
    wal.sync()
    assert next(iter(read_records(wal.directory, pos))).payload == b"still writable"


def test_max_wal_time_drops_unsent_records_and_counts_them(filled):
    wal, positions = filled
    instance = wal.instance
    before = metric("agent_wal_dropped_records_total", instance)
    before_bytes = metric("agent_wal_dropped_bytes_total", instance)
    slow = positions[4]
    far_future = _now_ms() + HOUR_MS
    # min_wal_time would keep them; max_wal_time (1 min) has expired for all of them
    result = wal.truncate(2 * HOUR_MS, 60_000, [slow], now_ms=far_future)
    assert result.segments_deleted == _segments_of(positions)[:-1]
    unsent = [p for p in positions if p >= slow and p.segment < wal.current_segment]
    assert result.dropped_records == len(unsent)
    assert metric("agent_wal_dropped_records_total", instance) == before + len(unsent)
    assert metric("agent_wal_dropped_bytes_total", instance) == before_bytes + result.dropped_bytes > 0
    # not yet expired: nothing happens
    wal2_files = segment_files(wal.directory)
    assert wal.truncate(0, HOUR_MS, [None]).segments_deleted == []
    assert segment_files(wal.directory) == wal2_files


def test_retention_after_reopen_scans_old_segments(tmp_path):
    d = str(tmp_path)
    wal = WAL.open(d, segment_size=1024, instance="ret-reopen")
    positions = [wal.append(1, payload(i, 300)) for i in range(10)]
    wal.sync()
    wal.close()
    wal = WAL.open(d, segment_size=1024, instance="ret-reopen")
    result = wal.truncate(0, 0, [positions[-1]], now_ms=_now_ms() + HOUR_MS)
    wal.close()
    assert result.segments_deleted == _segments_of(positions)[:-1]
    assert metric("agent_wal_storage_size_bytes", "ret-reopen") == sum(
        os.path.getsize(os.path.join(d, n)) for n in segment_files(d)
    )


def test_wal_stats_counts_and_is_read_only(tmp_path):
    d = str(tmp_path)
    wal = WAL.open(d, segment_size=2048, instance="stats")
    started = _now_ms()
    for i in range(30):
        wal.append(1 + i % 3, payload(i, 100 + i))
    wal.marker("ep").store(Position(2, 0))
    wal.sync()
    wal.close()
    listing = {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)}
    seen = []
    stats = wal_stats(d, on_record=lambda r: seen.append(r.type))
    assert {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)} == listing
    assert stats.records == 30 and len(seen) == 30
    assert stats.records_by_type == {1: 10, 2: 10, 3: 10}
    assert stats.bytes == sum(17 + 100 + i for i in range(30)) == sum(stats.bytes_by_type.values())
    assert started - 1000 <= stats.oldest_ms <= stats.newest_ms <= _now_ms()
    assert [s.number for s in stats.segments] == list(range(1, len(stats.segments) + 1))
    assert sum(s.records for s in stats.segments) == 30
    assert stats.markers == {"ep": Position(2, 0)}
    assert stats.corruptions == []
