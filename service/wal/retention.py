"""Retention: delete whole old segments that every consumer has read, or that outlived max_wal_time."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import metrics
from .record import Position
from .segment import SegmentEnd, frames, fsync_dir, list_segments, segment_path

if TYPE_CHECKING:
    from .writer import WAL



@dataclass(slots=True)
class TruncateResult:
    """What one retention pass did."""

    segments_deleted: list[int] = field(default_factory=list)
    bytes_deleted: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0


def truncate(
    wal: WAL,
    min_keep_time_ms: int,
    max_age_ms: int,
    consumers: list[Position | None],
    *,
    now_ms: int | None = None,
) -> TruncateResult:
    """Delete the oldest segments that may go, oldest first, stopping at the first that may not.

    A segment (never the one being written) may go when

    - every consumer's marker is past its last record *and* its newest record is older than
      ``min_keep_time_ms`` (a consumer without a marker, ``None``, has read nothing); or
    - its newest record is older than ``max_age_ms`` (0 disables this), markers or not: records no
      consumer had read yet are counted in ``agent_wal_dropped_records_total``/``_bytes_total``.

    Only a prefix is deleted, so readers never meet a hole. Blocking file I/O.
    """
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    keep_after = now - min_keep_time_ms
    expire_before = now - max_age_ms if max_age_ms > 0 else None
    slowest = min((c if c is not None else Position(0, 0) for c in consumers), default=None)
    result = TruncateResult()
    for number in list_segments(wal.directory):
        if number >= wal.current_segment:
            break
        summary = wal.segment_summary(number)
        last_ms = summary.last_ms if summary.last_ms is not None else 0
        consumed = slowest is None or slowest >= Position(number, summary.valid_end)
        if consumed and last_ms < keep_after:
            unsent = (0, 0)
        elif expire_before is not None and last_ms < expire_before:
            unsent = _unsent(wal.directory, number, slowest)
        else:
            break
        path = segment_path(wal.directory, number)
        size = os.path.getsize(path)
        os.unlink(path)
        result.segments_deleted.append(number)
        result.bytes_deleted += size
        result.dropped_records += unsent[0]
        result.dropped_bytes += unsent[1]
    if result.segments_deleted:
        fsync_dir(wal.directory)
        labels = wal.instance
        metrics.TRUNCATIONS.labels(labels).inc()
        metrics.SEGMENTS_DELETED.labels(labels).inc(len(result.segments_deleted))
        if result.dropped_records:
            metrics.DROPPED_RECORDS.labels(labels).inc(result.dropped_records)
            metrics.DROPPED_BYTES.labels(labels).inc(result.dropped_bytes)
            wal.log.warning("max_wal_time dropped records not yet sent", records=result.dropped_records)
    return result


def _unsent(directory: str, number: int, slowest: Position | None) -> tuple[int, int]:
    """Records and bytes of segment ``number`` at or after the slowest consumer's position."""
    if slowest is None or slowest.segment > number:
        return 0, 0
    start = slowest.offset if slowest.segment == number else 0
    records = size = 0
    fd = os.open(segment_path(directory, number), os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = SegmentEnd()
        for _t, _ms, offset, rsize, _p in frames(fd, 0, os.fstat(fd).st_size, end, verify=False):
            if offset >= start:
                records += 1
                size += rsize
    finally:
        os.close(fd)
    return records, size
