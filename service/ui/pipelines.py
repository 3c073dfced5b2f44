"""A snapshot of this node's pipelines for the UI, read from its own self metrics.

Reading the registry rather than the instances keeps the UI apart from their internals: what the page shows
is exactly what `/metrics` exports (WAL, remote_write queues, Loki clients, the search store).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

LOGS_PREFIX = "logs/"  # the WAL metrics of a logs instance carry instance_name="logs/<name>"
_WAL = {
    "agent_wal_storage_size_bytes": "size_bytes",
    "agent_wal_segment_current": "segment_current",
    "agent_wal_samples_appended_total": "samples_appended",
    "agent_wal_records_appended_total": "records_appended",
    "agent_wal_corruptions_total": "corruptions",
    "agent_wal_writes_failed_total": "writes_failed",
    "agent_wal_dropped_records_total": "dropped_records",
}
_REMOTE = {
    "prometheus_remote_storage_samples_total": "samples_sent",
    "prometheus_remote_storage_samples_failed_total": "samples_failed",
    "prometheus_remote_storage_samples_retried_total": "samples_retried",
    "prometheus_remote_storage_samples_dropped_total": "samples_dropped",
    "prometheus_remote_storage_samples_pending": "samples_pending",
    "prometheus_remote_storage_shards": "shards",
    "prometheus_remote_storage_shards_desired": "shards_desired",
    "prometheus_remote_storage_shards_max": "shards_max",
    "prometheus_remote_storage_highest_timestamp_in_seconds": "highest_timestamp",
    "prometheus_remote_storage_queue_highest_sent_timestamp_seconds": "highest_sent_timestamp",
}
_LOKI = {
    "loki_write_sent_entries_total": "sent_entries",
    "loki_write_dropped_entries_total": "dropped_entries",
    "loki_write_batch_retries_total": "batch_retries",
    "loki_write_sent_bytes_total": "sent_bytes",
}
_SEARCH = {
    "logs_search_written_entries_total": "written_entries",
    "logs_search_skipped_entries_total": "skipped_entries",
    "logs_search_queue_entries": "queued_entries",
    "logs_search_lag_seconds": "lag_seconds",
    "logs_search_writer_up": "writer_up",
    "logs_search_store_bytes": "store_bytes",
}


def snapshot(registry: Collector | Any = REGISTRY) -> dict[str, Any]:
    """{"metrics": [{instance, wal, remotes}], "logs_wals": [{instance, wal}], "loki_clients": [...],
    "search": [...]}."""
    wal: dict[str, dict[str, float]] = {}
    remotes: dict[tuple[str, str, str], dict[str, Any]] = {}
    loki: dict[tuple[str, str], dict[str, Any]] = {}
    search: dict[str, dict[str, Any]] = {}
    for sample in _samples(registry):
        name, labels, value = sample
        if name in _WAL and "instance_name" in labels:
            wal.setdefault(labels["instance_name"], {})[_WAL[name]] = value
        elif name in _REMOTE:
            key = (labels.get("instance_name", ""), labels.get("remote_name", ""), labels.get("url", ""))
            remotes.setdefault(key, {"instance": key[0], "remote_name": key[1], "url": key[2]})[_REMOTE[name]] = value
        elif name in _LOKI:
            key = (labels.get("host", ""), labels.get("tenant", ""))
            loki.setdefault(key, {"host": key[0], "tenant": key[1]})[_LOKI[name]] = value
        elif name in _SEARCH:
            inst = labels.get("instance_name", "")
            search.setdefault(inst, {"instance": inst})[_SEARCH[name]] = value
    for remote in remotes.values():
        high, sent = remote.get("highest_timestamp"), remote.get("highest_sent_timestamp")
        remote["lag_seconds"] = max(0.0, high - sent) if high and sent else None
    instances = sorted((set(wal) | {k[0] for k in remotes if k[0]}) - {i for i in wal if i.startswith(LOGS_PREFIX)})
    return {
        "metrics": [{"instance": inst, "wal": wal.get(inst, {}),
                     "remotes": [r for k, r in sorted(remotes.items()) if k[0] == inst]} for inst in instances],
        "logs_wals": [{"instance": inst[len(LOGS_PREFIX):], "wal": w} for inst, w in sorted(wal.items())
                      if inst.startswith(LOGS_PREFIX)],
        "loki_clients": [v for _, v in sorted(loki.items())],
        "search": [v for _, v in sorted(search.items())],
    }


def _samples(registry: Any) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in registry.collect():
        for s in family.samples:
            yield s.name, s.labels, s.value
