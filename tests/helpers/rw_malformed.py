"""Malformed remote write bodies, each with what Prometheus 2.42's receiver answers to it.

Built field by field (not with a protobuf library, which cannot write most of these). Cases marked
``prometheus_accepts`` are ones where our receiver is deliberately stricter: Prometheus 2.42 does not check
UTF-8, nor label names, but our sender parses what it forwards and refuses such strings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from service.proto.wire import encode_varint


def ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field with a one-byte tag."""
    return bytes([tag]) + encode_varint(len(payload)) + payload


def label(name: bytes, value: bytes) -> bytes:
    return ld(0x0A, ld(0x0A, name) + ld(0x12, value))


def sample(ts_ms: int, value: float = 1.0) -> bytes:
    return ld(0x12, b"\x09" + struct.pack("<d", value) + b"\x10" + encode_varint(ts_ms))


def series(ts_ms: int, *extra: bytes, name: bytes = b"rw_strict") -> bytes:
    return ld(0x0A, label(b"__name__", name) + label(b"case", b"x") + sample(ts_ms) + b"".join(extra))


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes  # the decoded WriteRequest (snappy-compress it to send)
    prometheus: str  # what Prometheus 2.42 answers: its status and the start of its message
    prometheus_accepts: bool = False


def cases(ts_ms: int) -> list[Case]:
    good = label(b"__name__", b"rw_strict") + label(b"case", b"x")
    exemplar_labels = ld(0x0A, ld(0x0A, b"trace_id") + ld(0x12, b"\xc3"))
    return [
        Case("field 1 as a varint", b"\x08\x05", "400 proto: wrong wireType = 0 for field Timeseries"),
        Case("a good series, then field 1 as a varint", series(ts_ms) + b"\x08\x05",
             "400 proto: wrong wireType = 0 for field Timeseries"),
        Case("label name as a varint", ld(0x0A, ld(0x0A, b"\x08\x01") + sample(ts_ms)),
             "400 proto: wrong wireType = 0 for field Name"),
        Case("sample value as a varint", ld(0x0A, good + ld(0x12, b"\x08\x01")),
             "400 proto: wrong wireType = 0 for field Value"),
        Case("sample value as a varint in the 50th series",
             b"".join(series(ts_ms, name=f"rw_strict_{i}".encode()) for i in range(49))
             + ld(0x0A, good + ld(0x12, b"\x09" + b"\x00" * 8 + b"\x10\x01" + b"\x08\x01")),
             "400 proto: wrong wireType = 0 for field Value"),
        Case("metadata type as bytes in the 3rd entry",
             ld(0x1A, b"\x08\x01" + ld(0x12, b"a")) * 2 + ld(0x1A, ld(0x0A, b"x") + ld(0x12, b"m")),
             "400 proto: wrong wireType = 2 for field Type"),
        Case("exemplar value as a varint", series(ts_ms, ld(0x1A, b"\x10\x01")),
             "400 proto: wrong wireType = 0 for field Value"),
        Case("metadata type as bytes", ld(0x1A, ld(0x0A, b"x") + ld(0x12, b"m")),
             "400 proto: wrong wireType = 2 for field Type"),
        Case("histogram count as bytes", ld(0x0A, good + ld(0x22, b"\x0a\x01\x00")),
             "400 proto: wrong wireType = 2 for field CountInt"),
        Case("wire type 7", series(ts_ms) + b"\x0f", "400 proto: wrong wireType = 7 for field Timeseries"),
        Case("truncated label", ld(0x0A, ld(0x0A, b"\x0a\x10abc") + sample(ts_ms)), "400 unexpected EOF"),
        Case("truncated body", series(ts_ms)[:-3], "400 unexpected EOF"),
        Case("truncated fixed64", ld(0x0A, good + ld(0x12, b"\x09\x00\x00")), "400 unexpected EOF"),
        Case("varint of 11 bytes", ld(0x0A, good + ld(0x12, b"\x10" + b"\xff" * 10 + b"\x01")),
             "400 proto: integer overflow"),
        Case("field number 0", series(ts_ms) + b"\x00\x01", "400 proto: WriteRequest: illegal tag 0"),
        Case("end group outside a group", series(ts_ms) + b"\x0c",
             "400 proto: WriteRequest: wiretype end group for non-group"),
        Case("empty label set", ld(0x0A, sample(ts_ms)), "500 empty labelset"),
        Case("duplicate label name", ld(0x0A, good + label(b"case", b"y") + sample(ts_ms)),
             '500 label name "case" is not unique'),
        Case("invalid UTF-8 in a label value", ld(0x0A, label(b"__name__", b"rw_strict")
                                                  + label(b"case", b"\xff\xfe") + sample(ts_ms)),
             "204", prometheus_accepts=True),
        Case("invalid UTF-8 in a label name", ld(0x0A, label(b"__name__", b"rw_strict")
                                                 + label(b"\xff", b"x") + sample(ts_ms)),
             "204", prometheus_accepts=True),
        Case("invalid UTF-8 in an exemplar label",
             series(ts_ms, ld(0x1A, exemplar_labels + b"\x11" + b"\x00" * 8 + b"\x18" + encode_varint(ts_ms))),
             "204", prometheus_accepts=True),
        Case("invalid UTF-8 in metadata help", ld(0x1A, b"\x08\x01" + ld(0x12, b"rw_strict") + ld(0x22, b"\xff")),
             "204", prometheus_accepts=True),
        Case("invalid UTF-8 in metadata unit", ld(0x1A, b"\x08\x01" + ld(0x12, b"rw_strict") + ld(0x2A, b"\xc0")),
             "204", prometheus_accepts=True),
        Case("invalid label name", ld(0x0A, label(b"__name__", b"rw_strict") + label(b"a-b", b"1") + sample(ts_ms)),
             "204", prometheus_accepts=True),
    ]


def accepted(ts_ms: int) -> list[tuple[str, bytes]]:
    """Unusual bodies both receivers accept: unknown field numbers (skipped) and a group."""
    return [
        ("unknown top-level field", series(ts_ms) + b"\x10\x01"),
        ("unknown series field", series(ts_ms, b"\x78\x01")),
        ("unknown group", series(ts_ms) + b"\x13\x08\x01\x14"),
        ("NUL in a label value", ld(0x0A, label(b"__name__", b"rw_strict") + label(b"case", b"x\x00y")
                                   + sample(ts_ms))),
    ]
