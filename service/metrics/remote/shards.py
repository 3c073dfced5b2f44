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

A batch is split only when it must be: one that fits one request (``max_samples_per_send``) goes out whole
whatever the number of shards. And a batch whose records were all written by scrape loops (each record
noted with its target, see ``service.metrics.recordcounts``) is split by target, whole records at a time
(:func:`split_by_owner`): all records of one target go to one sub-request in WAL order, so a series is still
in one sub-request per batch, and the sub-requests' counts and (for a single record) compressed bodies are
the records' own, with no walk and no parse.
"""

from __future__ import annotations

import zlib

from service.proto.wire import CodecError, next_field, read_varint


def split_by_series(raw: bytes, shards: int) -> list[bytes]:
    """``shards`` decoded WriteRequests that together hold the fields of ``raw``; some may be empty.

    The walk is inlined for the usual case (a TimeSeries field and labels with one-byte lengths): it runs
    once per series of every batch while the queue has more than one shard."""
    if shards <= 1:
        return [raw]
    view = memoryview(raw)
    out: list[list[memoryview]] = [[] for _ in range(shards)]
    add = [parts.append for parts in out]
    crc32 = zlib.crc32
    pos, end = 0, len(raw)
    while pos < end:
        if raw[pos] != 0x0A or pos + 1 >= end:  # not a TimeSeries (or a truncated one): shard 0
            _, _, stop = next_field(raw, pos)
            out[0].append(view[pos:stop])
            pos = stop
            continue
        n = raw[pos + 1]
        if n < 0x80:
            start = pos + 2
        else:
            n, start = read_varint(raw, pos + 1)
        stop = start + n
        if stop > end:
            raise CodecError("protobuf: field runs past the end")
        p = start
        while p < stop and raw[p] == 0x0A:  # its leading label fields
            if p + 1 < stop and raw[p + 1] < 0x80:
                p += 2 + raw[p + 1]
            else:
                length, p = read_varint(raw, p + 1)
                p += length
        add[crc32(view[start:min(p, stop)]) % shards](view[pos:stop])
        pos = stop
    return [b"".join(parts) for parts in out]


def split_by_owner(owners: list[bytes], samples: list[int], shards: int) -> list[list[int]]:
    """Indexes of the records of each sub-request (none empty, at most ``shards``, each in record order): the
    records of one owner stay together; owners go, in order of first appearance, to the sub-request holding
    the fewest samples so far."""
    groups: dict[bytes, list[int]] = {}
    for i, owner in enumerate(owners):
        groups.setdefault(owner, []).append(i)
    loads = [0] * max(1, min(shards, len(groups)))
    out: list[list[int]] = [[] for _ in loads]
    for members in groups.values():
        target = loads.index(min(loads))
        out[target].extend(members)
        loads[target] += sum(samples[i] for i in members)
    for part in out:
        part.sort()
    return out


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
