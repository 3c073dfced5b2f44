"""Naming the field where a malformed ``logproto.PushRequest`` breaks.

upb only says "Error parsing message"; a gRPC client told ``INVALID_ARGUMENT`` should learn which field is
wrong (``PushRequest.streams[2].entries[5].line: invalid UTF-8``). This walk runs only after a decode has failed, so it
costs nothing on the accepted path. Unknown fields, and known numbers with another wire type, are skipped as
protobuf parsers skip them.
"""

from __future__ import annotations

from service.proto.wire import CodecError, next_field, read_varint

# message -> field number -> (name, kind, repeated); a kind is "string", "varint" or a message name
_SCHEMA: dict[str, dict[int, tuple[str, str, bool]]] = {
    "PushRequest": {1: ("streams", "StreamAdapter", True), 2: ("format", "string", False)},
    "StreamAdapter": {1: ("labels", "string", False), 2: ("entries", "EntryAdapter", True),
                      3: ("hash", "varint", False)},
    "EntryAdapter": {1: ("timestamp", "Timestamp", False), 2: ("line", "string", False),
                     3: ("structuredMetadata", "LabelPairAdapter", True),
                     4: ("parsed", "LabelPairAdapter", True)},
    "LabelPairAdapter": {1: ("name", "string", False), 2: ("value", "string", False)},
    "Timestamp": {1: ("seconds", "varint", False), 2: ("nanos", "varint", False)},
}


class _Broken(Exception):
    pass


def push_request_error(raw: bytes) -> str | None:
    """Where the serialized PushRequest ``raw`` is malformed, as "PushRequest.<field path>: <reason>", or None when
    this walk finds nothing wrong with it."""
    try:
        _walk(raw, 0, len(raw), "PushRequest", "PushRequest")
    except _Broken as exc:
        return str(exc)
    return None


def _walk(buf: bytes, pos: int, end: int, message: str, path: str) -> None:
    fields = _SCHEMA[message]
    counts: dict[int, int] = {}
    while pos < end:
        try:
            tag, _ = read_varint(buf, pos)
        except CodecError:
            raise _Broken(f"{path}: truncated field tag") from None
        number, wire = tag >> 3, tag & 7
        spec = fields.get(number)
        if spec is not None and wire != (0 if spec[1] == "varint" else 2):
            spec = None  # a known number with another wire type is an unknown field to protobuf parsers
        name = path + "."
        if spec is None:
            name += f"field {number}"
        else:
            name += spec[0]
            if spec[2]:
                index = counts.get(number, 0)
                counts[number] = index + 1
                name += f"[{index}]"
        if number == 0:
            raise _Broken(f"{path}: invalid field number 0")
        try:
            _, start, stop = next_field(buf, pos)
        except CodecError as exc:
            raise _Broken(f"{name}: {str(exc).removeprefix('protobuf: ')}") from None
        if stop > end:
            raise _Broken(f"{name}: field runs past the end of {path}")
        if spec is not None:
            kind = spec[1]
            if kind == "string":
                try:
                    buf[start:stop].decode()
                except UnicodeDecodeError as exc:
                    raise _Broken(f"{name}: invalid UTF-8 at byte {exc.start}") from None
            elif kind in _SCHEMA:
                _walk(buf, start, stop, kind, name)
        pos = stop
