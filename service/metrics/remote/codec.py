"""Remote write 1.0 wire codec: snappy-block + protobuf WriteRequest.

Three hot paths, each kept at C speed where it can be:
- receive: read the snappy length preamble (reject oversize bodies before decompressing), decompress, parse
  with upb, count what arrived;
- send: hand-encode TimeSeries from cached per-series label bytes (building upb messages object by object is
  3-6x slower). Encoded TimeSeries fields concatenate into a WriteRequest, so batches are joined, not rebuilt;
- forward with external_labels / write_relabel_configs: walk the stored body's bytes, swap each series'
  label fields for relabeled ones from a cache keyed on the original label bytes, copy the rest verbatim.

The encoder writes fields in field-number order and leaves proto3 defaults out, so its output is
byte-identical to upb's SerializeToString for the same message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

import snappy
from google.protobuf.message import DecodeError

from service.proto.remote_pb2 import WriteRequest
from service.proto.wire import VARINT, CodecError, encode_varint, snappy_declared_length

__all__ = [
    "TooLarge", "WriteStats", "decode_write_request", "decompress_body", "encode_labels", "encode_sample",
    "encode_timeseries",
]


class TooLarge(CodecError):
    """The snappy preamble declares more decoded bytes than allowed (answer 413)."""

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(f"decoded body would be {declared} bytes, more than the limit of {limit} bytes")
        self.declared = declared
        self.limit = limit

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return TooLarge, (self.declared, self.limit)  # pickles across ingest worker processes


@dataclass(slots=True)
class WriteStats:
    """What a WriteRequest carried."""

    series: int
    samples: int
    exemplars: int
    histograms: int
    metadata: int
    decoded_bytes: int


_series_parts = attrgetter("samples", "exemplars", "histograms")


def decompress_body(body: bytes, max_decoded_bytes: int) -> bytes:
    """The decompressed snappy block, refused (TooLarge) before decompressing when its preamble declares
    more than `max_decoded_bytes`; CodecError when it is not valid snappy."""
    declared = snappy_declared_length(body)
    if declared > max_decoded_bytes:
        raise TooLarge(declared, max_decoded_bytes)
    try:
        return snappy.uncompress(body)
    except snappy.UncompressError as exc:
        reason = str(exc)
        raise CodecError("snappy: corrupt input" + (f": {reason}" if reason else "")) from None


def decode_write_request(body: bytes, max_decoded_bytes: int) -> tuple[WriteRequest, WriteStats]:
    """Decompress and parse a remote write body, refusing one that would decode to more than
    `max_decoded_bytes` before decompressing it. Raises TooLarge or CodecError."""
    raw = decompress_body(body, max_decoded_bytes)
    try:
        request = WriteRequest.FromString(raw)
    except DecodeError as exc:
        raise CodecError(f"protobuf: cannot parse WriteRequest: {exc}") from None
    samples = exemplars = histograms = 0
    for series_samples, series_exemplars, series_histograms in map(_series_parts, request.timeseries):
        # one pass: every repeated-field access builds a wrapper, which is most of the cost here
        samples += len(series_samples)
        exemplars += len(series_exemplars)
        histograms += len(series_histograms)
    stats = WriteStats(series=len(request.timeseries), samples=samples, exemplars=exemplars,
                       histograms=histograms, metadata=len(request.metadata), decoded_bytes=len(raw))
    return request, stats


# --- encoding -------------------------------------------------------------------------------------------

_cached_varint = lru_cache(maxsize=8192)(encode_varint)  # sample timestamps repeat across series


def _string_field(tag: bytes, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode()
    return tag + encode_varint(len(data)) + data


def encode_labels(labels: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    """The TimeSeries.labels fields (field 1) for labels already sorted by name. Cache the result per series:
    it is the prefix of every TimeSeries sent for that series."""
    out = []
    for name, value in labels:
        label = _string_field(b"\x0a", name) + _string_field(b"\x12", value)
        out.append(b"\x0a" + encode_varint(len(label)) + label)
    return b"".join(out)


_pack_double = struct.Struct("<d").pack


def encode_sample(ts_ms: int, value: float) -> bytes:
    """One TimeSeries.samples field (field 2): Sample{value=1 double, timestamp=2 int64}."""
    body = b""
    packed = _pack_double(value)
    if packed != b"\x00\x00\x00\x00\x00\x00\x00\x00":  # proto3 leaves out +0.0, but not -0.0
        body = b"\x09" + packed
    if ts_ms:
        body += b"\x10" + _cached_varint(ts_ms)
    return b"\x12" + VARINT[len(body)] + body  # at most 20 bytes: a one-byte length


def encode_timeseries(label_bytes: bytes, samples: list[tuple[int, float]] | tuple[tuple[int, float], ...]
                      ) -> bytes:
    """One WriteRequest.timeseries field (field 1). Concatenated results form a WriteRequest."""
    if len(samples) == 1:
        ((ts_ms, value),) = samples
        body = label_bytes + encode_sample(ts_ms, value)
    else:
        body = label_bytes + b"".join([encode_sample(t, v) for t, v in samples])
    return b"\x0a" + encode_varint(len(body)) + body
