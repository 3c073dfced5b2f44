"""Loki's JSON push, validated and encoded straight to ``logproto`` wire bytes (no upb message per entry).

Shape: ``{"streams": [{"stream": {"k": "v"}, "values": [["<ns>", "line", {"meta": "v"}], ...]}]}``;
timestamps are strings of integer nanoseconds. Each value becomes one EntryAdapter in upb's canonical
form (fields in number order, zero and empty fields left out), so a stored push is byte for byte what
``PushRequest.SerializeToString`` would have produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from service.proto.wire import LEN12, VARINT, VARINT_CONT, encode_varint

PREFIX = "loghttp.PushRequest.ReadJSON: "
MAX_NS = (1 << 63) - 1  # Loki parses a timestamp with strconv.ParseInt(s, 10, 64)
_SECONDS: dict[int, bytes] = {}
_NAMES: dict[str, bytes] = {}


class JsonPushError(ValueError):
    """A JSON push that cannot be accepted (answered 400 with this message)."""

    def __init__(self, message: str) -> None:
        super().__init__(PREFIX + message)


def json_streams(body: bytes) -> Iterator[tuple[dict[str, str], Any]]:
    """(labels, values) of each stream of a JSON push; raises :class:`JsonPushError`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JsonPushError(str(exc)) from None
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise JsonPushError("expect {")
    streams = doc.get("streams")
    if streams is None:
        return
    if not isinstance(streams, list):
        raise JsonPushError("streams is not an array")
    for s in streams:
        if s is None:
            continue
        if not isinstance(s, dict):
            raise JsonPushError("stream is not an object")
        labels = s.get("stream") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise JsonPushError("stream labels must be an object of strings")
        values = s.get("values") or ()
        if not isinstance(values, (list, tuple)):  # a string or object would iterate as bad values anyway
            raise JsonPushError("a value must be [ts, line]")
        yield labels, values


# tag byte + varint length, for lengths < 2**14: the entry (0x12), line (0x12), metadata (0x1a) headers
_LEN1A: list[bytes] = [b"\x1a" + v for v in VARINT]


def _ts_prefixes(s: int) -> tuple[bytes, ...]:
    """For seconds ``s``: the timestamp field up to the nanos value, by the nanos varint's length (0-5),
    cached: the entries of a push share a few seconds."""
    out = _SECONDS.get(s)
    if out is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        sec = b"\x08" + encode_varint(s) if s else b""
        out = _SECONDS[s] = (b"\x0a" + VARINT[len(sec)] + sec,
                             *(b"\x0a" + VARINT[len(sec) + 1 + k] + sec + b"\x10" for k in range(1, 6)))
    return out


def _name(k: str) -> bytes:
    """The name field of a metadata pair (LabelPairAdapter field 1; empty for an empty name), cached."""
    if len(_NAMES) > 4096:
        _NAMES.clear()
    kb = k.encode()
    out = _NAMES[k] = b"\x0a" + encode_varint(len(kb)) + kb if kb else b""
    return out


def _metadata(meta: Any) -> bytes:
    """The structuredMetadata fields (EntryAdapter field 3) of one entry."""
    if type(meta) is not dict:
        raise JsonPushError("structured metadata must be an object of strings")
    out = b""
    names, len12, len1a = _NAMES, LEN12, _LEN1A
    for k, x in meta.items():
        if type(x) is not str:
            raise JsonPushError("structured metadata must be an object of strings")
        name = names.get(k) or _name(k)
        xb = x.encode()
        n = len(xb)
        if n:
            h = len12[n] if n < 0x4000 else b"\x12" + encode_varint(n)
            m = len(name) + len(h) + n
        else:
            h = b""
            m = len(name)
        out += (len1a[m] if m < 0x4000 else b"\x1a" + encode_varint(m)) + name + h + xb
    return out


def _bad_value(v: Any) -> JsonPushError:
    """Why a value that is not a well-formed ``[ts, line, ...]`` is rejected."""
    if type(v) is not list or len(v) < 2:
        return JsonPushError("a value must be [ts, line]")
    if type(v[0]) is not str:
        return JsonPushError("Value is string, but can't find closing '\"' symbol")
    return JsonPushError("the log line must be a string")


def _long_timestamp(ts: str) -> int:
    """A timestamp of 19 digits or more: in range only when it still fits Loki's int64 nanoseconds."""
    digits = ts.lstrip("0")
    t = int(digits) if len(digits) <= 30 else MAX_NS + 1  # no int() of an arbitrarily long digit string
    if t > MAX_NS:
        raise JsonPushError(f'strconv.ParseInt: parsing "{ts[:40]}": value out of range')
    return t


def encode_entries(values: Any, stamp: bytes | None) -> tuple[list[bytes], int, int]:
    """The entries fields (StreamAdapter field 2) of one stream's ``values``: (parts to join, their byte
    length, entry count).

    ``stamp``: a complete timestamp field to give every entry (re-stamping), else the incoming one is
    encoded. Every value is validated either way, as Alloy decodes the whole body first.
    """
    parts: list[bytes] = []
    var, cont, len12 = VARINT, VARINT_CONT, LEN12
    seconds = _SECONDS
    total = count = 0
    tsf = stamp or b""
    for v in values:
        if v is None:
            continue
        try:
            if type(v) is not list:
                raise IndexError
            ts = v[0]
            line = v[1]
        except IndexError:
            raise _bad_value(v) from None
        if type(ts) is not str or type(line) is not str:
            raise _bad_value(v)
        if not (ts.isascii() and ts.isdigit()):  # int() would take " 1", "1_0" and other digits too
            raise JsonPushError(f'invalid timestamp "{ts[:40]}"')
        t = int(ts) if len(ts) < 19 else _long_timestamp(ts)
        if stamp is None:
            s, ns = divmod(t, 1_000_000_000)
            pre = seconds.get(s) or _ts_prefixes(s)
            if ns >= 0x10000000:
                tsf = pre[5] + cont[ns & 0x3FFF] + cont[ns >> 14 & 0x3FFF] + var[ns >> 28]
            elif ns >= 0x4000:
                nb = cont[ns & 0x3FFF] + var[ns >> 14]
                tsf = pre[len(nb)] + nb
            elif ns:
                nb = var[ns]
                tsf = pre[len(nb)] + nb
            else:
                tsf = pre[0]
        lb = line.encode()
        n = len(lb)
        lh = (len12[n] if n < 0x4000 else b"\x12" + encode_varint(n)) if n else b""
        if len(v) > 2 and v[2] is not None:
            meta = _metadata(v[2])
            size = len(tsf) + len(lh) + n + len(meta)
            hdr = len12[size] if size < 0x4000 else b"\x12" + encode_varint(size)
            parts += (hdr, tsf, lh, lb, meta)
        else:
            size = len(tsf) + len(lh) + n
            hdr = len12[size] if size < 0x4000 else b"\x12" + encode_varint(size)
            parts += (hdr, tsf, lh, lb)
        total += len(hdr) + size
        count += 1
    return parts, total, count
