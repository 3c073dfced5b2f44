"""Protobuf framing of ``logproto.PushRequest`` written and rewritten by hand, for the push hot paths.

Building upb messages entry by entry costs far more than the bytes involved, so JSON pushes are encoded
straight to wire bytes and re-stamped protobuf pushes are rewritten at the byte level. Everything here
produces bytes that ``push_pb2.PushRequest`` parses to the message the slow way would have built
(tests/test_logs_wire.py checks that against upb).

Field numbers (push.proto): PushRequest.streams = 1; StreamAdapter.labels = 1, .entries = 2;
EntryAdapter.timestamp = 1, .line = 2, .structuredMetadata = 3; Timestamp.seconds = 1, .nanos = 2.
"""

from __future__ import annotations

import re

from service.proto.wire import LEN12, VARINT, CodecError, encode_varint, next_field, read_varint


class WireError(CodecError):
    """Bytes that are not the logproto they should be (read_varint and next_field from service/proto/wire.py,
    shared with remote_write, raise its base class CodecError)."""


def field_bytes(tag: int, data: bytes) -> bytes:
    """A length-delimited field: tag byte, varint length, data."""
    n = len(data)
    return bytes((tag,)) + (VARINT[n] if n < 0x4000 else encode_varint(n)) + data


def timestamp_bytes(seconds: int, nanos: int) -> bytes:
    """A Timestamp message body in upb's canonical form (zero fields left out)."""
    out = b""
    if seconds:
        out = b"\x08" + encode_varint(seconds & 0xFFFFFFFFFFFFFFFF)
    if nanos:
        out += b"\x10" + encode_varint(nanos)
    return out


def stamp_field(seconds: int, nanos: int) -> bytes:
    """The timestamp field (EntryAdapter field 1) that re-stamps an entry when written after its other
    fields: both members are explicit (even when zero), so it overrides whatever came before it, as the
    last occurrence of a singular field does in every protobuf parser."""
    ts = b"\x08" + encode_varint(seconds & 0xFFFFFFFFFFFFFFFF) + b"\x10" + encode_varint(nanos)
    return field_bytes(0x0A, ts)


def restamp_stream(buf: bytes, start: int, end: int, labels: bytes, stamp: bytes) -> bytes:
    """A StreamAdapter field (tag and length included) from the stream payload ``buf[start:end]``: the
    ``labels`` field replaces every labels field, each entry gets ``stamp`` (a :func:`stamp_field`)
    appended and loses a leading timestamp field, other fields are kept (after the entries)."""
    entries: list[bytes] = []  # each entry's header and fields; joined with the stamp between them
    append, len12, slen = entries.append, LEN12, len(stamp)
    other = b""
    p = start
    while p < end:
        if buf[p] == 0x12:  # an entry: tag byte, then a 1- or 2-byte length on the fast path
            b = buf[p + 1]
            if b < 0x80:
                q = p + 2
                p = q + b
            else:
                c = buf[p + 2]
                if c < 0x80:
                    q = p + 3
                    p = q + (b & 0x7F | c << 7)
                else:
                    n, q = read_varint(buf, p + 1)
                    p = q + n
            if q < p and buf[q] == 0x0A and buf[q + 1] < 0x80:  # leading timestamp: drop it
                q += 2 + buf[q + 1]
            n = p - q + slen
            append((len12[n] if n < 0x4000 else b"\x12" + encode_varint(n)) + buf[q:p])
            continue
        tag, _, fend = next_field(buf, p)
        if tag != 0x0A:  # hash or unknown fields: kept
            other += buf[p:fend]
        p = fend
    if p != end:
        raise WireError("stream runs past its length")
    body = stamp.join(entries) + stamp if entries else b""
    n = len(labels) + len(body) + len(other)
    return b"".join((b"\x0a", encode_varint(n), labels, body, other))


# Every encoding of a google.protobuf.Timestamp member that Loki refuses matches one of these byte patterns
# (and some valid bytes do too, e.g. inside lines): seconds (tag 0x08) at or past 10000-01-01 or negative
# need a varint of 6 bytes or more; nanos (tag 0x10) of 2**30 or more, or negative, a 5-byte varint whose
# last byte is 4 or more, or a longer one, and nanos in [1e9, 2**30) a 5-byte varint ending in 3 after a
# byte of 0xdc or more (those matches are decoded to tell 1e9 and up from the few valid ones). Valid times
# until the year 3058 match nothing else. Patterns starting with a literal byte scan fastest.
_SUSPECT_SECONDS = re.compile(rb"\x08[\x80-\xff]{5}")
_SUSPECT_NANOS = re.compile(rb"\x10[\x80-\xff]{3}(?:[\x80-\xff][\x04-\xff]|[\xdc-\xff]\x03)")


def may_hold_bad_timestamp(raw: bytes) -> bool:
    """False when no Timestamp in a serialized PushRequest can be out of Loki's range (C-speed scans, ≈ 0.5 µs
    per entry); True means the entries must be checked one by one (it may be a line's bytes)."""
    if _SUSPECT_SECONDS.search(raw) is not None:
        return True
    for m in _SUSPECT_NANOS.finditer(raw):
        b = m.group()
        if b[5] != 3:
            return True
        low = (b[1] & 0x7F) | (b[2] & 0x7F) << 7 | (b[3] & 0x7F) << 14 | (b[4] & 0x7F) << 21
        if (low | 3 << 28) >= 1_000_000_000:
            return True
    return False
