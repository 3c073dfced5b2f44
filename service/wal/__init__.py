"""Write-ahead log: framed records in numbered segments, group-commit fsync, tails, markers, retention.

Cut like Prometheus' ``tsdb/wlog``: ``record`` (framing), ``segment`` (files), ``writer`` (the WAL and
its flush thread), ``reader`` (from disk), ``tail`` (following the writer), ``marker`` (per-consumer
progress), ``retention`` (deleting old segments), ``stats`` (read-only summary), ``naming`` (safe paths).
"""

from .errors import WALError
from .marker import ProgressMarker, list_markers
from .naming import safe_name, wal_dir_for
from .reader import Corruption, WALReader, read_records
from .record import Position, Record
from .retention import TruncateResult
from .stats import SegmentStats, WALStats, wal_stats
from .tail import WALTail
from .writer import DEFAULT_SEGMENT_SIZE, WAL

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "WAL",
    "Corruption",
    "Position",
    "ProgressMarker",
    "Record",
    "SegmentStats",
    "TruncateResult",
    "WALError",
    "WALReader",
    "WALStats",
    "WALTail",
    "list_markers",
    "read_records",
    "safe_name",
    "wal_dir_for",
    "wal_stats",
]
