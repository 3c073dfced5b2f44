"""Record framing: a fixed header (type, length, append time, CRC32) followed by the payload.

Layout, little endian::

    u8  type        chosen by the caller, 1..255 (0 is never written, so zero-filled space is invalid)
    u32 length      payload length in bytes
    u64 time_ms     wall-clock append time, milliseconds since the epoch
    u32 crc32       zlib CRC32 of the 13 bytes above followed by the payload

The WAL never interprets payloads. A record never spans two segments.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

_PREFIX = struct.Struct("<BIQ")
_CRC = struct.Struct("<I")
HEADER = struct.Struct("<BIQI")
HEADER_SIZE = HEADER.size  # 17
MAX_PAYLOAD = (1 << 31) - 1


class Position(NamedTuple):
    """A place in the WAL: segment number and byte offset of a record boundary.

    Positions order naturally (segment first). A consumer's progress is the position *after* the last
    record it consumed, i.e. the ``end`` of that record.
    """

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """One record read back from the WAL."""

    type: int
    time_ms: int
    payload: bytes
    position: Position

    @property
    def end(self) -> Position:
        """The position right after this record (what a consumer stores once it has sent it)."""
        return Position(self.position.segment, self.position.offset + HEADER_SIZE + len(self.payload))

    @property
    def size(self) -> int:
        """Bytes this record takes on disk, header included."""
        return HEADER_SIZE + len(self.payload)


def encode_header(rtype: int, time_ms: int, payload: bytes) -> bytes:
    """The header for ``payload``; write it immediately before the payload."""
    prefix = _PREFIX.pack(rtype, len(payload), time_ms)
    return prefix + _CRC.pack(zlib.crc32(payload, zlib.crc32(prefix)))


def check_type(rtype: int) -> None:
    """Reject a record type that cannot be framed."""
    if not 1 <= rtype <= 255:
        raise ValueError(f"record type must be 1..255, got {rtype}")


def crc_ok(header: bytes | memoryview, payload: bytes | memoryview) -> bool:
    """Whether ``payload`` matches the CRC in ``header``."""
    (crc,) = _CRC.unpack_from(header, _PREFIX.size)
    return zlib.crc32(payload, zlib.crc32(header[: _PREFIX.size])) == crc
