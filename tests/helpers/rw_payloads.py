"""Remote write bodies for the receiver tests and benchmarks (hand-encoded, as real senders encode them)."""

from __future__ import annotations

import snappy

from service.metrics.remote.codec import encode_labels, encode_timeseries
from service.proto.remote_pb2 import WriteRequest


def write_body(series: list[list[tuple[str, str]]], ts_ms: int = 1_700_000_000_000, value: float = 1.0) -> bytes:
    """A snappy WriteRequest with one sample per label set (labels encoded in the order given)."""
    raw = b"".join(encode_timeseries(encode_labels(labels), [(ts_ms, value)]) for labels in series)
    return snappy.compress(raw)


def simple_series(n: int, name: str = "test_metric", **extra: str) -> list[list[tuple[str, str]]]:
    return [sorted([("__name__", name), ("idx", str(i)), *extra.items()]) for i in range(n)]


def decode(body: bytes) -> WriteRequest:
    return WriteRequest.FromString(snappy.uncompress(body))
