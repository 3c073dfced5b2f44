"""Protobuf and snappy wire helpers shared by the remote write and Loki push paths.

Both hot paths read and write protobuf bytes by hand (building upb messages field by field costs far more than
the bytes involved), so the varint reader, the field walker and the varint encoder with its lookup tables live
here once. The tables are plain lists: an inner loop indexes them directly (`VARINT[n] if n < 0x4000 else
encode_varint(n)`) and pays no function call for the common sizes.
"""

from __future__ import annotations

__all__ = [
    "LEN12", "VARINT", "VARINT_CONT", "CodecError", "encode_varint", "next_field", "read_varint",
    "snappy_declared_length",
]


class CodecError(ValueError):
    """Bytes that are not the snappy block or protobuf message they should be (answer 400)."""


# VARINT[n]: the varint of n < 2**14; VARINT_CONT[n]: the two low 7-bit groups of a longer varint (continuation
# bits set on both); LEN12[n]: a field with tag byte 0x12 (field 2, length-delimited) and length n < 2**14.
VARINT: list[bytes] = [bytes((i,)) if i < 0x80 else bytes((i & 0x7F | 0x80, i >> 7)) for i in range(1 << 14)]
VARINT_CONT: list[bytes] = [bytes((i & 0x7F | 0x80, i >> 7 | 0x80)) for i in range(1 << 14)]
LEN12: list[bytes] = [b"\x12" + v for v in VARINT]


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint (table lookups for the common sizes); negative int64 values take their
    10-byte two's complement form."""
    if 0 <= value < 0x4000:
        return VARINT[value]
    if value < 0:
        value += 1 << 64
    out = b""
    while value >= 0x4000:
        out += VARINT_CONT[value & 0x3FFF]
        value >>= 14
    return out + VARINT[value]


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it). Raises CodecError on a truncated or over-long varint."""
    result = shift = 0
    end = len(data)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            break
    raise CodecError("protobuf: truncated or over-long varint")


def next_field(buf: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """(tag, start of the field's payload, end of the field) of the protobuf field at ``pos``: a varint or
    fixed-width field's payload is its value bytes, a length-delimited field's is what follows the length."""
    tag, p = read_varint(buf, pos)
    wire = tag & 7
    if wire == 2:
        n, p = read_varint(buf, p)
        end = p + n
    elif wire == 0:
        end = read_varint(buf, p)[1]
    elif wire == 1:
        end = p + 8
    elif wire == 5:
        end = p + 4
    else:  # groups: in neither remote_write nor logproto
        raise CodecError(f"protobuf: unsupported wire type {wire}")
    if end > len(buf):
        raise CodecError("protobuf: field runs past the end")
    return tag, p, end


def snappy_declared_length(body: bytes) -> int:
    """The decoded length a snappy block declares in its varint preamble (at most 2^32-1), read without
    decompressing anything."""
    result = shift = 0
    for i in range(min(len(body), 5)):
        byte = body[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > 0xFFFFFFFF:
                break
            return result
        shift += 7
    raise CodecError("snappy: corrupt input: bad length preamble")
