"""Read-only statistics over a WAL directory, for the ``wal-stats`` command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .marker import list_markers
from .reader import Corruption, WALReader
from .record import Position, Record
from .segment import list_segments


@dataclass(slots=True)
class SegmentStats:
    """One segment: its valid records and where its valid part ends."""

    number: int
    records: int = 0
    bytes: int = 0
    oldest_ms: int | None = None
    newest_ms: int | None = None


@dataclass(slots=True)
class WALStats:
    """A whole WAL directory. Times are append times in ms since the epoch."""

    directory: str
    segments: list[SegmentStats] = field(default_factory=list)
    records_by_type: dict[int, int] = field(default_factory=dict)
    bytes_by_type: dict[int, int] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    oldest_ms: int | None = None
    newest_ms: int | None = None
    corruptions: list[Corruption] = field(default_factory=list)
    markers: dict[str, Position] = field(default_factory=dict)


def wal_stats(directory: str, on_record: Callable[[Record], None] | None = None) -> WALStats:
    """Read every valid record in ``directory`` (CRC checked; nothing is written or repaired).

    ``on_record`` is called with each record, e.g. to count samples and series per payload type.
    """
    stats = WALStats(directory, markers=list_markers(directory))
    per_segment = {n: SegmentStats(n) for n in list_segments(directory)}
    reader = WALReader(directory)
    for rec in reader:
        seg = per_segment.setdefault(rec.position.segment, SegmentStats(rec.position.segment))
        size = rec.size
        seg.records += 1
        seg.bytes += size
        seg.oldest_ms = _min(seg.oldest_ms, rec.time_ms)
        seg.newest_ms = _max(seg.newest_ms, rec.time_ms)
        stats.records_by_type[rec.type] = stats.records_by_type.get(rec.type, 0) + 1
        stats.bytes_by_type[rec.type] = stats.bytes_by_type.get(rec.type, 0) + size
        if on_record is not None:
            on_record(rec)
    stats.segments = [per_segment[n] for n in sorted(per_segment)]
    stats.records = sum(s.records for s in stats.segments)
    stats.bytes = sum(s.bytes for s in stats.segments)
    stats.oldest_ms = min((s.oldest_ms for s in stats.segments if s.oldest_ms is not None), default=None)
    stats.newest_ms = max((s.newest_ms for s in stats.segments if s.newest_ms is not None), default=None)
    stats.corruptions = reader.corruptions
    return stats


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a
