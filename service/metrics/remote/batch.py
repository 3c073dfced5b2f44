"""Turning WAL records into send batches without decoding series.

A record of type ``records.WRITE_REQUEST`` is a snappy-compressed WriteRequest as received. Serialized
WriteRequests concatenate into one, so a batch is the concatenation of its records' decompressed bytes,
compressed once (snappy runs at GB/s; a single untouched record is forwarded as stored).

Counting what a body carries without walking it in Python: the body is parsed with a *view* message whose
``timeseries`` field (1) is declared singular. Protobuf merges repeated occurrences of a singular message
field, so upb folds every series into one TimeSeries whose ``samples``/``exemplars``/``histograms`` lists
hold all of them: counts are ``len()`` at C speed (about 0.35 ms per 2000 samples). The highest sample
timestamp is a ``max`` over those merged samples (another 0.25 ms per 2000).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import snappy
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from service.metrics.records import WRITE_REQUEST as RECORD_WRITE_REQUEST  # the name the queue checks
from service.proto import remote_pb2
from service.proto.wire import CodecError
from service.wal import Position, Record

__all__ = ["RECORD_WRITE_REQUEST", "Batch", "Counts", "count", "decode_record"]


def _view_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="service/metrics/remote/merged_view.proto", package="service.remote", syntax="proto3",
        dependency=[remote_pb2.DESCRIPTOR.name],
    )
    msg = fdp.message_type.add(name="MergedWriteRequest")
    fdt = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="timeseries", number=1, type=fdt.TYPE_MESSAGE, type_name=".prometheus.TimeSeries",
                  label=fdt.LABEL_OPTIONAL)
    msg.field.add(name="metadata", number=3, type=fdt.TYPE_MESSAGE, type_name=".prometheus.MetricMetadata",
                  label=fdt.LABEL_REPEATED)
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName("service.remote.MergedWriteRequest")
    except KeyError:
        pool.Add(fdp)
        desc = pool.FindMessageTypeByName("service.remote.MergedWriteRequest")
    return message_factory.GetMessageClass(desc)


_MergedView = _view_class()


@dataclass(slots=True)
class Counts:
    """What a (part of a) WriteRequest carries."""

    samples: int = 0
    exemplars: int = 0
    histograms: int = 0
    metadata: int = 0
    highest_ts_ms: int = 0

    def add(self, other: Counts) -> None:
        self.samples += other.samples
        self.exemplars += other.exemplars
        self.histograms += other.histograms
        self.metadata += other.metadata
        self.highest_ts_ms = max(self.highest_ts_ms, other.highest_ts_ms)


def count(raw: bytes, *, highest: bool = True) -> Counts:
    """Counts of a decoded WriteRequest (see the module docstring). Raises CodecError."""
    try:
        view = _MergedView.FromString(raw)
    except DecodeError as exc:
        raise CodecError(f"protobuf: cannot parse WriteRequest: {exc}") from None
    series = view.timeseries
    samples = series.samples
    top = 0
    if highest:
        if samples:
            top = max([s.timestamp for s in samples])
        for h in series.histograms:
            top = max(top, h.timestamp)
    return Counts(len(samples), len(series.exemplars), len(series.histograms), len(view.metadata), top)


@dataclass(slots=True)
class Batch:
    """Records ready to send: decoded parts (or one stored body), their counts, and the WAL end position."""

    end: Position
    counts: Counts = field(default_factory=Counts)
    parts: list[bytes] = field(default_factory=list)
    stored_body: bytes | None = None  # the one record's compressed body, when it can go out untouched
    records: int = 0
    raw_bytes: int = 0
    dropped_samples: int = 0  # dropped by write_relabel_configs
    bad_records: int = 0  # unreadable records skipped
    full: bool = False  # cut at its size limit (more was waiting), not by the send deadline

    def raw(self) -> bytes:
        return b"".join(self.parts)

    def extend(self, later: Batch) -> None:
        """Append the batch cut right after this one (a larger send after the shards went up)."""
        self.end = later.end
        self.counts.add(later.counts)
        self.parts.extend(later.parts)
        self.records += later.records
        self.raw_bytes += later.raw_bytes
        self.dropped_samples += later.dropped_samples
        self.bad_records += later.bad_records
        self.full = later.full

    def body(self) -> bytes:
        """The snappy-compressed request body."""
        if self.stored_body is not None and self.records == 1:
            return self.stored_body
        return snappy.compress(self.raw())


def decode_record(rec: Record) -> bytes:
    """The decoded WriteRequest bytes of a record. Raises CodecError."""
    try:
        return snappy.uncompress(rec.payload)
    except snappy.UncompressError as exc:
        raise CodecError(f"snappy: corrupt input: {exc}") from None
