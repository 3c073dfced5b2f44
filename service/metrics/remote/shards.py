"""Splitting a batch across shards by series, so shards can send in parallel without reordering a series.

How shards apply here: the queue runs between ``min_shards`` and ``max_shards`` shards, as resharding.py
decides. Batches are sent one after another; with N > 1 shards each batch (up to N * max_samples_per_send
samples) is split by a hash of each series' label bytes into N sub-requests that are sent concurrently, and
the next batch starts only when every sub-request has been answered (or dropped). A series therefore lives
in one sub-request per batch and batches never overlap, so per-series order holds under any retry pattern
and any change of N between batches. (N requests in flight from one in-order pipeline would not be safe: a
retried batch lands after its successor.)

The split walks the top-level fields in Python (about 1 µs per series), so N = 1 (forwarding whole batches)
is the fast start; more shards pay off only against a slow remote that serves requests in parallel, which is
when resharding adds them. Metadata and unknown top-level fields go to shard 0. Label bytes are hashed as
stored, so a series that a sender spells with its labels in varying order may land in different shards
(senders sort labels).
"""

from __future__ import annotations

import zlib

from service.proto.wire import CodecError, next_field, read_varint


def split_by_series(raw: bytes, shards: int) -> list[bytes]:
    """``shards`` decoded WriteRequests that together hold the fields of ``raw``; some may be empty."""
    if shards <= 1:
        return [raw]
    view = memoryview(raw)
    out: list[list[memoryview]] = [[] for _ in range(shards)]
    pos, end = 0, len(raw)
    while pos < end:
        tag, start, stop = next_field(raw, pos)
        shard = 0
        if tag == 0x0A:  # a TimeSeries: hash its leading label fields
            shard = zlib.crc32(view[start:_labels_end(raw, start, stop)]) % shards
        out[shard].append(view[pos:stop])
        pos = stop
    return [b"".join(parts) for parts in out]


def _labels_end(raw: bytes, pos: int, stop: int) -> int:
    while pos < stop and raw[pos] == 0x0A:
        length, pos = read_varint(raw, pos + 1)
        pos += length
    return min(pos, stop)


def top_level_fields(raw: bytes) -> list[bytes]:
    """The top-level fields of a decoded WriteRequest (series, metadata entries, anything else), each a
    WriteRequest on its own; ``[raw]`` when it cannot be split."""
    fields = []
    pos, end = 0, len(raw)
    try:
        while pos < end:
            _, _, stop = next_field(raw, pos)
            fields.append(raw[pos:stop])
            pos = stop
    except CodecError:
        return [raw]
    return fields
