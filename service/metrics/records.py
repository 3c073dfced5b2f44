"""Types of the records a metrics instance writes to its WAL (the WAL itself never interprets payloads)."""

from __future__ import annotations

# The received remote write body exactly as it arrived: snappy block of a prometheus.WriteRequest, already
# validated. Serialized WriteRequests concatenate into a valid WriteRequest, so a sender batches records by
# decompressing and joining them, without parsing.
WRITE_REQUEST = 1
