"""Re-encode stored WriteRequest bodies with external_labels and write_relabel_configs applied.

A stored body is forwarded as is unless the endpoint needs other labels. Then each TimeSeries is split into
its label fields and the rest (samples, exemplars, histograms): the label fields are looked up in a cache
keyed on their original bytes, and the rest is copied byte for byte. Only a cache miss decodes labels,
merges external labels (a series' own label wins, as in Prometheus), applies the relabel rules (after the
external labels, as Prometheus does) and encodes the sorted result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import snappy

from service.metrics.remote.codec import encode_labels
from service.proto.remote_pb2 import TimeSeries
from service.proto.wire import CodecError, encode_varint, read_varint
from service.relabel import RelabelConfig, Relabeler

_DROPPED = b""  # cached label bytes of a dropped series


class SeriesRewriter:
    """Rewrites the series of WriteRequest bodies for one remote_write endpoint; keeps its own label cache."""

    def __init__(self, external_labels: Mapping[str, str] | None = None,
                 rules: Sequence[RelabelConfig] = (), max_cached_series: int = 1_000_000) -> None:
        self.external_labels = dict(sorted((external_labels or {}).items()))
        self.relabeler = Relabeler(rules)
        self.max_cached_series = max_cached_series
        self._cache: dict[bytes, bytes] = {}
        self.dropped_series = 0  # series dropped by relabeling, counted per occurrence

    @property
    def active(self) -> bool:
        """False when bodies pass through untouched (no external labels, no rules)."""
        return bool(self.external_labels) or bool(self.relabeler)

    def label_bytes(self, original: bytes) -> bytes:
        """New label fields for a series' original label fields; b"" when the series is dropped."""
        new = self._cache.get(original)
        if new is None:
            new = self._relabel(original)
            if len(self._cache) >= self.max_cached_series:
                self._cache.clear()
            self._cache[original] = new
        return new

    def _relabel(self, original: bytes) -> bytes:
        labels = {label.name: label.value for label in TimeSeries.FromString(original).labels}
        for name, value in self.external_labels.items():
            labels.setdefault(name, value)
        result = self.relabeler.process(labels)
        if not result:  # dropped, or nothing left
            return _DROPPED
        return encode_labels(list(result.items()))

    def rewrite_compressed(self, body: bytes) -> bytes:
        """rewrite() for a snappy-compressed body."""
        if not self.active:
            return body
        try:
            raw = snappy.uncompress(body)
        except snappy.UncompressError as exc:
            raise CodecError(f"snappy: corrupt input: {exc}") from None
        return snappy.compress(self.rewrite(raw))

    def rewrite(self, raw: bytes) -> bytes:
        """A decoded WriteRequest with every series relabeled; metadata and unknown fields are kept."""
        if not self.active:
            return raw
        view = memoryview(raw)
        out: list[bytes | memoryview] = []
        pos, end = 0, len(raw)
        while pos < end:
            if raw[pos] == 0x0A:  # field 1, length-delimited: a TimeSeries
                length, start = read_varint(raw, pos + 1)
                stop = start + length
                if stop > end:
                    raise CodecError("protobuf: TimeSeries runs past the end of the WriteRequest")
                self._series(raw, view, start, stop, out)
                pos = stop
            else:
                field_end = _skip_field(raw, pos, end)
                out.append(view[pos:field_end])
                pos = field_end
        return b"".join(out)

    def _series(self, raw: bytes, view: memoryview, start: int, stop: int,
                out: list[bytes | memoryview]) -> None:
        j = start
        while j < stop and raw[j] == 0x0A:  # the label fields, normally all first
            length = raw[j + 1] if j + 1 < stop else 0x80
            if length < 0x80:
                j += 2 + length
            else:
                length, k = read_varint(raw, j + 1)
                j = k + length
        rest_start = j
        interleaved = False
        while j < stop:
            if raw[j] == 0x12 and j + 1 < stop and raw[j + 1] < 0x80:  # a Sample: the common case
                j += 2 + raw[j + 1]
                continue
            interleaved = interleaved or raw[j] == 0x0A
            j = _skip_field(raw, j, stop)
        if j != stop:
            raise CodecError("protobuf: field runs past the end of a TimeSeries")
        if interleaved:
            key, rest = _split_labels(raw, view, start, stop)
        else:
            key, rest = raw[start:rest_start], view[rest_start:stop]
        labels = self.label_bytes(key)
        if not labels:
            self.dropped_series += 1
            return
        out.append(b"\x0a")
        out.append(encode_varint(len(labels) + len(rest)))
        out.append(labels)
        out.append(rest)


def _split_labels(raw: bytes, view: memoryview, start: int, stop: int) -> tuple[bytes, bytes]:
    """Label fields and other fields of a TimeSeries whose labels are not all at the front."""
    labels: list[memoryview] = []
    rest: list[memoryview] = []
    j = start
    while j < stop:
        k = _skip_field(raw, j, stop)
        (labels if raw[j] == 0x0A else rest).append(view[j:k])
        j = k
    return b"".join(labels), b"".join(rest)


def _skip_field(raw: bytes, pos: int, end: int) -> int:
    """The position after the field starting at `pos`."""
    tag, pos = read_varint(raw, pos)
    wire_type = tag & 7
    if tag >> 3 == 0:
        raise CodecError("protobuf: invalid field number 0")
    if wire_type == 0:
        _, pos = read_varint(raw, pos)
    elif wire_type == 1:
        pos += 8
    elif wire_type == 2:
        length, pos = read_varint(raw, pos)
        pos += length
    elif wire_type == 5:
        pos += 4
    else:
        raise CodecError(f"protobuf: unsupported wire type {wire_type}")
    if pos > end:
        raise CodecError("protobuf: field runs past the end of its message")
    return pos
