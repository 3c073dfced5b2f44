"""Turning WAL records into send batches without decoding series.

A record of type ``records.WRITE_REQUEST`` is a snappy-compressed WriteRequest as received. Serialized
WriteRequests concatenate into one, so a batch is the concatenation of its records' decompressed bytes,
compressed once (snappy runs at GB/s; a single untouched record is forwarded as stored).

Counting what a body carries without walking it in Python: the body is parsed with a *view* message whose
``timeseries`` field (1) is declared singular. Protobuf merges repeated occurrences of a singular message
field, so upb folds every series into one TimeSeries whose ``samples``/``exemplars``/``histograms`` lists
hold all of them: counts are ``len()`` at C speed. The views skip what counting does not need: labels are
unknown fields to them and a sample is an empty message, so nothing per label or per value is built. The
highest sample timestamp comes from a second view whose merged ``samples`` is one message with a repeated
``timestamp``: every sample's timestamp in one list, ``max`` at C speed. Both parses of a 2000-sample scrape
took 0.47 ms against 1.1 ms for the full types and a Python ``max`` over the samples; the full-type view
remains for the case where the timestamps do not line up with the samples (one omitted, as a zero
timestamp is, or repeated). Only a request that both omits one sample's timestamp field and repeats
another's, as no sender writes, could show a highest timestamp that the last-wins rule would not: it only
feeds the highest-timestamp gauges.
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


def _count_views() -> tuple[type, type]:
    """(a request counting series parts, a request listing every sample timestamp): see the docstring."""
    fdt = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="service/metrics/remote/count_view.proto", package="service.countview", syntax="proto3",
        dependency=[remote_pb2.DESCRIPTOR.name],
    )
    fdp.message_type.add(name="Marker")  # a sample, counted; its fields are skipped
    stamps = fdp.message_type.add(name="Stamps")
    stamps.field.add(name="timestamp", number=2, type=fdt.TYPE_INT64, label=fdt.LABEL_REPEATED,
                     options=descriptor_pb2.FieldOptions(packed=False))
    series = fdp.message_type.add(name="Series")
    for name, number, type_name in (("samples", 2, ".service.countview.Marker"),
                                    ("exemplars", 3, ".prometheus.Exemplar"),
                                    ("histograms", 4, ".prometheus.Histogram")):
        series.field.add(name=name, number=number, type=fdt.TYPE_MESSAGE, type_name=type_name,
                         label=fdt.LABEL_REPEATED)
    stamp_series = fdp.message_type.add(name="StampSeries")
    stamp_series.field.add(name="samples", number=2, type=fdt.TYPE_MESSAGE, type_name=".service.countview.Stamps",
                           label=fdt.LABEL_OPTIONAL)
    for name, series_type in (("Request", "Series"), ("StampRequest", "StampSeries")):
        req = fdp.message_type.add(name=name)
        req.field.add(name="timeseries", number=1, type=fdt.TYPE_MESSAGE,
                      type_name=f".service.countview.{series_type}", label=fdt.LABEL_OPTIONAL)
        req.field.add(name="metadata", number=3, type=fdt.TYPE_MESSAGE, type_name=".prometheus.MetricMetadata",
                      label=fdt.LABEL_REPEATED)
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName("service.countview.Request")
    except KeyError:
        pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("service.countview.Request")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("service.countview.StampRequest")))


_CountView, _StampView = _count_views()


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
        view = _CountView.FromString(raw)
        series = view.timeseries
        n = len(series.samples)
        top = 0
        if highest:
            if n:
                stamps = _StampView.FromString(raw).timeseries.samples.timestamp
                if len(stamps) == n:
                    top = max(stamps)
                else:  # a sample without (or with a repeated) timestamp field: read each sample
                    top = max([s.timestamp for s in _MergedView.FromString(raw).timeseries.samples])
            for h in series.histograms:
                top = max(top, h.timestamp)
    except DecodeError as exc:
        raise CodecError(f"protobuf: cannot parse WriteRequest: {exc}") from None
    return Counts(n, len(series.exemplars), len(series.histograms), len(view.metadata), top)


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
    # Per part, when every part is a scrape record (see recordcounts): its target, its counts, and its stored
    # body when the part is that body's decoded bytes untouched (None once rewritten).
    owners: list[bytes] | None = field(default_factory=list)
    part_counts: list[Counts] = field(default_factory=list)
    payloads: list[bytes | None] = field(default_factory=list)

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
        if self.owners is not None and later.owners is not None:
            self.owners.extend(later.owners)
            self.part_counts.extend(later.part_counts)
            self.payloads.extend(later.payloads)
        else:
            self.owners = None

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
