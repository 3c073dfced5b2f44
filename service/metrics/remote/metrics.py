"""The remote_write sender's self metrics, named as Prometheus' ``storage/remote`` names them.

Module-level objects labelled by ``remote_name``, ``url`` and ``instance_name`` so that several queues in one
process share one registration; :func:`forget` removes a queue's series when it is gone for good.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from service.metricnames import remove_series

_NS = "prometheus_remote_storage_"
LABELS = ("remote_name", "url", "instance_name")


def _counter(name: str, doc: str) -> Counter:
    return Counter(_NS + name, doc, LABELS)


def _gauge(name: str, doc: str) -> Gauge:
    return Gauge(_NS + name, doc, LABELS)


SAMPLES = _counter("samples_total", "Total number of samples sent to remote storage.")
SAMPLES_FAILED = _counter("samples_failed_total",
                          "Total number of samples which failed on send to remote storage, non-recoverable errors.")
SAMPLES_RETRIED = _counter("samples_retried_total",
                           "Total number of samples which failed on send to remote storage but were retried "
                           "because the send error was recoverable.")
SAMPLES_DROPPED = _counter("samples_dropped_total",
                           "Total number of samples which were dropped after being read from the WAL before "
                           "being sent via remote write, either via relabelling or unintentionally because "
                           "of an unknown reference ID.")
SAMPLES_PENDING = _gauge("samples_pending", "The number of samples pending in the queues shards to be sent "
                         "to the remote storage.")
EXEMPLARS = _counter("exemplars_total", "Total number of exemplars sent to remote storage.")
EXEMPLARS_FAILED = _counter("exemplars_failed_total", "Total number of exemplars which failed on send to "
                            "remote storage, non-recoverable errors.")
EXEMPLARS_RETRIED = _counter("exemplars_retried_total", "Total number of exemplars which failed on send to "
                             "remote storage but were retried because the send error was recoverable.")
HISTOGRAMS = _counter("histograms_total", "Total number of histograms sent to remote storage.")
HISTOGRAMS_FAILED = _counter("histograms_failed_total", "Total number of histograms which failed on send to "
                             "remote storage, non-recoverable errors.")
HISTOGRAMS_RETRIED = _counter("histograms_retried_total", "Total number of histograms which failed on send to "
                              "remote storage but were retried because the send error was recoverable.")
METADATA = _counter("metadata_total", "Total number of metadata entries sent to remote storage.")
METADATA_FAILED = _counter("metadata_failed_total", "Total number of metadata entries which failed on send to "
                           "remote storage, non-recoverable errors.")
METADATA_RETRIED = _counter("metadata_retried_total", "Total number of metadata entries which failed on send "
                            "to remote storage but were retried because the send error was recoverable.")
BYTES = _counter("bytes_total", "The total number of bytes of data (not metadata) sent by the queue after "
                 "compression.")
SENT_BATCH_DURATION = Histogram(
    _NS + "sent_batch_duration_seconds",
    "Duration of send calls to the remote storage.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
)
HIGHEST_TIMESTAMP = _gauge("highest_timestamp_in_seconds",
                           "Highest timestamp read from the WAL by this queue, in seconds since the epoch.")
HIGHEST_SENT_TIMESTAMP = _gauge("queue_highest_sent_timestamp_seconds",
                                "Timestamp from a WAL sample, the highest successfully sent by this queue, in "
                                "seconds since the epoch.")
SHARDS = _gauge("shards", "The number of shards used for parallel sending to the remote storage.")
SHARDS_MIN = _gauge("shards_min", "The minimum number of shards that the queue is allowed to run.")
SHARDS_MAX = _gauge("shards_max", "The maximum number of shards that the queue is allowed to run.")
SHARDS_DESIRED = _gauge("shards_desired", "The number of shards that the queues shard calculation wants to "
                        "run based on the rate of samples in vs. samples out.")

ISOLATED = Counter("agent_remote_write_isolated_total",
                   "WAL records the sender could not read (reason unreadable), and records or single series "
                   "the remote refused on their own (reason refused): each dropped alone, so the rest of its "
                   "batch was delivered.", (*LABELS, "reason"))
ISOLATION_REASONS = ("unreadable", "refused")

_ALL = (SAMPLES, SAMPLES_FAILED, SAMPLES_RETRIED, SAMPLES_DROPPED, SAMPLES_PENDING, EXEMPLARS, EXEMPLARS_FAILED,
        EXEMPLARS_RETRIED, HISTOGRAMS, HISTOGRAMS_FAILED, HISTOGRAMS_RETRIED, METADATA, METADATA_FAILED,
        METADATA_RETRIED, BYTES, SENT_BATCH_DURATION, HIGHEST_TIMESTAMP, HIGHEST_SENT_TIMESTAMP, SHARDS,
        SHARDS_MIN, SHARDS_MAX, SHARDS_DESIRED)


def forget(remote_name: str, url: str, instance: str) -> None:
    """Remove one queue's series (when its endpoint is removed for good)."""
    remove_series(_ALL, remote_name, url, instance)
    for reason in ISOLATION_REASONS:
        remove_series((ISOLATED,), remote_name, url, instance, reason)
