"""The logs WAL record (type 3): tenant, entry count and a snappy-block ``logproto.PushRequest``.

Layout: ``u16 tenant length | u32 entries | tenant (UTF-8) | snappy(PushRequest)`` (little endian). The
PushRequest is the validated push after static labels, relabeling and ``__`` removal, with canonical
label strings and final timestamps, so the sender never parses labels again. When a protobuf push needed
no change at all, the received compressed body is stored as it came. JSON pushes are encoded straight to
wire bytes (upb's canonical form); re-stamped protobuf pushes are rewritten at the byte level, each entry
carrying its new timestamp as its last field (protobuf's last-occurrence rule makes it the one parsed);
other changes (labels only) go through upb. Whatever the path, the bytes are snappy-compressed once.
Serialized PushRequests concatenate into a valid PushRequest, so the sender batches the records of one
tenant by concatenating their decompressed bytes without decoding them.
"""

from __future__ import annotations

import struct

RECORD_TYPE = 3
_HEAD = struct.Struct("<HI")


def encode_record(tenant: str, entries: int, snappy_body: bytes) -> bytes:
    t = tenant.encode()
    return _HEAD.pack(len(t), entries) + t + snappy_body


def decode_record(payload: bytes) -> tuple[str, int, bytes]:
    """(tenant, entries, snappy body) of a record."""
    n, entries = _HEAD.unpack_from(payload)
    start = _HEAD.size
    return payload[start:start + n].decode(), entries, payload[start + n:]
