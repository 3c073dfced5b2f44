"""Self metrics of the push receiver (``loki_source_api_*``) and the Loki client (``loki_write_*``),
named and labelled as Alloy/Promtail name them so existing dashboards work."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from service.metricnames import ExactCounter

_SIZE_BUCKETS = tuple(float(1 << n) for n in range(10, 27, 2))  # 1 KiB .. 64 MiB

REQUEST_DURATION = Histogram(
    "loki_source_api_request_duration_seconds", "Time (in seconds) spent serving HTTP requests.",
    ("method", "route", "status_code", "ws"),
)
REQUEST_BYTES = Histogram(
    "loki_source_api_request_message_bytes", "Size (in bytes) of messages received in the request.",
    ("method", "route"), buckets=_SIZE_BUCKETS,
)
RESPONSE_BYTES = Histogram(
    "loki_source_api_response_message_bytes", "Size (in bytes) of messages sent in response.",
    ("method", "route"), buckets=_SIZE_BUCKETS,
)
TCP_CONNECTIONS = Gauge(
    "loki_source_api_tcp_connections", "Current number of accepted TCP connections.", ("protocol",),
)
ENTRIES_WRITTEN = ExactCounter(
    "loki_source_api_entries_written", "Total number of entries written by the push API.",
)

_HT = ("host", "tenant")
SENT_ENTRIES = Counter("loki_write_sent_entries_total", "Number of log entries sent to the ingester.", _HT)
SENT_BYTES = Counter("loki_write_sent_bytes_total", "Number of bytes sent.", _HT)
DROPPED_ENTRIES = Counter(
    "loki_write_dropped_entries_total",
    "Number of log entries dropped because failed to be sent to the ingester after all retries.",
    (*_HT, "reason"),
)
DROPPED_BYTES = Counter(
    "loki_write_dropped_bytes_total",
    "Number of bytes dropped because failed to be sent to the ingester after all retries.",
    (*_HT, "reason"),
)
REQUEST_DURATION_WRITE = Histogram(
    "loki_write_request_duration_seconds", "Duration of send requests.", ("status_code", "host", "tenant"),
)
BATCH_RETRIES = Counter("loki_write_batch_retries_total", "Number of times batches has had to be retried.", _HT)
CLIENT_ERRORS = Counter(
    "loki_write_client_errors_total",
    "Errors a Loki client survived: marker_write (progress not stored, retried; lines are sent again after a "
    "restart at worst) and unexpected (the client resumed from its last sent position after a backoff).",
    ("host", "reason"),
)

_connection_sources: list[Callable[[], int]] = []
TCP_CONNECTIONS.labels("tcp").set_function(lambda: sum(f() for f in list(_connection_sources)))


def add_connection_source(source: Callable[[], int]) -> None:
    """Count the open connections of a push listener in ``loki_source_api_tcp_connections``."""
    _connection_sources.append(source)


def remove_connection_source(source: Callable[[], int]) -> None:
    if source in _connection_sources:
        _connection_sources.remove(source)
