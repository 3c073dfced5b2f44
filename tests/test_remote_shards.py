"""split_by_series (the inlined walk) puts every field where the plain field-by-field walk puts it: the same
bytes in the same shard, in the same order, and the same errors for broken input."""

from __future__ import annotations

import random
import zlib

import pytest

from service.metrics.remote.shards import split_by_series
from service.proto.wire import CodecError, encode_varint, next_field, read_varint


def reference(raw: bytes, shards: int) -> list[bytes]:
    """The plain walk: next_field per top-level field, read_varint per label."""
    if shards <= 1:
        return [raw]
    out: list[list[bytes]] = [[] for _ in range(shards)]
    pos = 0
    while pos < len(raw):
        tag, start, stop = next_field(raw, pos)
        shard = 0
        if tag == 0x0A:
            p = start
            while p < stop and raw[p] == 0x0A:
                length, p = read_varint(raw, p + 1)
                p += length
            shard = zlib.crc32(raw[start:min(p, stop)]) % shards
        out[shard].append(raw[pos:stop])
        pos = stop
    return [b"".join(parts) for parts in out]


def field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + encode_varint(len(payload)) + payload


def series(rng: random.Random) -> bytes:
    labels = b""
    for _ in range(rng.randrange(0, 6)):
        name = b"n%d" % rng.randrange(5)
        value = b"v" * rng.choice([1, 5, 100, 200, 300])  # one- and two-byte lengths
        labels += field(0x0A, field(0x0A, name) + field(0x12, value))
    sample = field(0x12, b"\x09" + bytes(rng.randrange(256) for _ in range(8)) + b"\x10\x01")
    return field(0x0A, labels + sample * rng.randrange(0, 3))


def request(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(0, 40)):
        roll = rng.random()
        if roll < 0.85:
            parts.append(series(rng))
        elif roll < 0.95:
            parts.append(field(0x1A, field(0x12, b"metric") + field(0x22, b"help")))  # metadata
        else:
            parts.append(b"\x20\x05")  # an unknown varint field
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_split_matches_the_plain_walk(seed: int, shards: int) -> None:
    raw = request(random.Random(seed))
    assert split_by_series(raw, shards) == reference(raw, shards)


@pytest.mark.parametrize("seed", range(20))
def test_broken_input_fails_alike(seed: int) -> None:
    rng = random.Random(seed)
    raw = request(rng)
    if not raw:
        return
    cut = raw[:rng.randrange(len(raw))] + bytes(rng.randrange(256) for _ in range(rng.randrange(3)))
    try:
        expected = reference(cut, 3)
    except CodecError as exc:
        with pytest.raises(CodecError) as raised:
            split_by_series(cut, 3)
        assert str(raised.value) == str(exc)
        return
    assert split_by_series(cut, 3) == expected
