"""Naming the broken field of a malformed PushRequest (the gRPC push's INVALID_ARGUMENT text), against upb."""

from __future__ import annotations

import random

import pytest

from service.logs.wire_errors import push_request_error
from service.proto.push_pb2 import PushRequest


def _request() -> bytes:
    req = PushRequest()
    for j in range(3):
        stream = req.streams.add(labels=f'{{a="{j}"}}')
        for i in range(5):
            e = stream.entries.add(line=f"line é {i}")
            e.timestamp.seconds, e.timestamp.nanos = 1_700_000_000, i
            e.structuredMetadata.add(name="trace", value="t")
    return req.SerializeToString()


@pytest.mark.parametrize(("raw", "expected"), [
    (b"\x0a\x05\x0a\x03\xff\xfe\xfd", "streams[0].labels: invalid UTF-8 at byte 0"),
    (b"\x0a\x06\x12\x04\x12\x02\xc3\x28", "streams[0].entries[0].line: invalid UTF-8 at byte 0"),
    (b"\x0a\x02\x0a\x05", "streams[0].labels: field runs past the end"),
    (b"\x0a\x06\x12\x04\x0a\x02\x08\xff", "streams[0].entries[0].timestamp.seconds: truncated or over-long varint"),
    (b"\x0a\x00\x0a\x02\x12\x00\x0a\x03\x12\x01\x80", "streams[2].entries[0]: truncated field tag"),
    (b"\x0b\x01", "field 1: unsupported wire type 3"),
    (b"\x12\x02\xff\xff", "format: invalid UTF-8 at byte 0"),
])
def test_names_the_broken_field(raw: bytes, expected: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - upb's DecodeError, whose class moves between versions
        PushRequest.FromString(raw)
    assert push_request_error(raw) == f"PushRequest.{expected}"


def test_names_the_message_when_no_field_is_known() -> None:
    assert push_request_error(b"\x00\x01") == "PushRequest: invalid field number 0"
    assert push_request_error(b"\x0a\x02\x80\x80") == "PushRequest.streams[0]: truncated field tag"


def test_agrees_with_upb_on_mutated_requests() -> None:
    """Never a complaint about bytes upb accepts; a named field for nearly every one it rejects."""
    raw = _request()
    assert push_request_error(raw) is None
    rnd = random.Random(7)
    rejected = named = 0
    for _ in range(3000):
        b = bytearray(raw)
        for _ in range(rnd.randint(1, 3)):
            p = rnd.randrange(len(b))
            op = rnd.random()
            if op < 0.6:
                b[p] = rnd.randrange(256)
            elif op < 0.8:
                del b[p:p + rnd.randint(1, 4)]
            else:
                b[p:p] = bytes([rnd.randrange(256)])
        data = bytes(b)
        try:
            PushRequest.FromString(data)
        except Exception:  # upb's DecodeError
            rejected += 1
            named += push_request_error(data) is not None
        else:
            assert push_request_error(data) is None, data.hex()
    assert rejected > 1000 and named >= rejected * 0.99, (rejected, named)
