"""A strict reading of remote_write's protobuf, as Prometheus' (Go) decoder reads it.

Python's protobuf keeps a known field sent with the wrong wire type as an unknown field; Go's generated code
answers `proto: wrong wireType`. The fuzz tests use this to tell a body a real receiver would refuse.
"""

from __future__ import annotations

VARINT, I64, LEN, I32 = 0, 1, 2, 5
# message -> field number -> (wire type, sub-message or "str" for a UTF-8 string, None for a scalar)
SCHEMA: dict[str, dict[int, tuple[int, str | None]]] = {
    "WriteRequest": {1: (LEN, "TimeSeries"), 3: (LEN, "MetricMetadata")},
    "TimeSeries": {1: (LEN, "Label"), 2: (LEN, "Sample"), 3: (LEN, "Exemplar"), 4: (LEN, None)},
    "Label": {1: (LEN, "str"), 2: (LEN, "str")},
    "Sample": {1: (I64, None), 2: (VARINT, None)},
    "Exemplar": {1: (LEN, "Label"), 2: (I64, None), 3: (VARINT, None)},
    "MetricMetadata": {1: (VARINT, None), 2: (LEN, "str"), 4: (LEN, "str"), 5: (LEN, "str")},
}


class WireError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise WireError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def check(buf: bytes, message: str = "WriteRequest") -> None:
    """Raise WireError where a Go decoder would fail: wrong wire type, truncation, bad UTF-8."""
    fields = SCHEMA[message]
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("illegal field number 0")
        want = fields.get(number)
        if want is not None and want[0] != wire:
            raise WireError(f"{message}.{number}: wrong wireType {wire}")
        if wire == VARINT:
            _, i = _varint(buf, i)
        elif wire == I64:
            i += 8
        elif wire == I32:
            i += 4
        elif wire == LEN:
            size, i = _varint(buf, i)
            body = buf[i:i + size]
            i += size
            if len(body) != size:
                raise WireError("truncated length-delimited field")
            sub = want[1] if want is not None else None
            if sub == "str":
                body.decode("utf-8")  # UnicodeDecodeError is a ValueError too
            elif sub is not None:
                check(body, sub)
        else:
            raise WireError(f"unsupported wire type {wire}")
        if i > len(buf):
            raise WireError("truncated fixed-size field")
