"""The WAL's self metrics, labelled by instance so several WALs in one process share one registration.

Names follow Grafana Agent (``agent_wal_*``) and mirror Prometheus' ``prometheus_tsdb_wal_*`` where one
exists, so existing dashboards need only a prefix change.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from service.metricnames import remove_series

_L = ("instance_name",)

CORRUPTIONS = Counter(
    "agent_wal_corruptions_total", "Torn or corrupt WAL tails cut off on open or skipped by readers.", _L
)
DROPPED_RECORDS = Counter(
    "agent_wal_dropped_records_total",
    "Records deleted by retention (max_wal_time) before every consumer had read them.",
    _L,
)
DROPPED_BYTES = Counter(
    "agent_wal_dropped_bytes_total",
    "Bytes of records deleted by retention before every consumer had read them.",
    _L,
)
FSYNC_DURATION = Histogram(
    "agent_wal_fsync_duration_seconds",
    "Duration of WAL fsync (group commit).",
    _L,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
SEGMENT_CURRENT = Gauge("agent_wal_segment_current", "Number of the WAL segment being written.", _L)
WRITES_FAILED = Counter("agent_wal_writes_failed_total", "WAL write or fsync failures.", _L)
STORAGE_SIZE = Gauge("agent_wal_storage_size_bytes", "Bytes of all WAL segments on disk.", _L)
RECORDS_APPENDED = Counter("agent_wal_records_appended_total", "Records made durable in the WAL.", _L)
TRUNCATIONS = Counter("agent_wal_truncations_total", "Retention passes that deleted segments.", _L)
SEGMENTS_DELETED = Counter("agent_wal_segments_deleted_total", "Segments deleted by retention.", _L)

_ALL = (
    CORRUPTIONS,
    DROPPED_RECORDS,
    DROPPED_BYTES,
    FSYNC_DURATION,
    SEGMENT_CURRENT,
    WRITES_FAILED,
    STORAGE_SIZE,
    RECORDS_APPENDED,
    TRUNCATIONS,
    SEGMENTS_DELETED,
)


def forget(instance: str) -> None:
    """Remove an instance's series (when the instance is deleted for good, not on a restart)."""
    remove_series(_ALL, instance)
