"""Decoding Loki pushes (protobuf and JSON) and applying a push target's rules to them.

Order as Alloy's ``loki.source.api``: undo Content-Encoding; decode by Content-Type; per stream parse the
label string (a bad one skips that stream and the answer becomes 400 naming it), set static ``labels``
over the incoming ones, apply ``relabel_configs``, drop labels starting with ``__``; stamp entries at
receipt unless ``use_incoming_timestamp``. Deliberate differences (documented in docs/http-api.md): the size
limit applies to JSON and is answered 413, an invalid ``X-Scope-OrgID`` is answered 400 instead of being
ignored, and a stream left with no labels is skipped and reported like a bad label string.

No upb message is built per entry on the way in: JSON goes from orjson's values straight to wire bytes
(push_json.py), re-stamping rewrites the received bytes (wire.py), labels are processed once per stream
(cached by label string). ``Accepted.request()`` parses the stored bytes only for sinks that want objects.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import snappy

from service.http.errors import HTTPError
from service.logs.labels import LabelParseError, format_labels, parse_labels
from service.logs.push_json import JsonPushError, encode_entries, json_streams
from service.logs.wire import (
    WireError,
    field_bytes,
    may_hold_bad_timestamp,
    restamp_stream,
    stamp_field,
)
from service.proto.push_pb2 import PushRequest
from service.proto.wire import CodecError, encode_varint, next_field, snappy_declared_length
from service.relabel import RelabelConfig, Relabeler

DEFAULT_MAX_MESSAGE_SIZE = 100 << 20
# The range of a valid google.protobuf.Timestamp, which Loki checks while decoding a push (gogo's stdtime):
# seconds in [0001-01-01, 10000-01-01), nanos in [0, 1e9).
MIN_SECONDS = -62135596800
MAX_SECONDS = 253402300800
_TENANT_CHARS = re.compile(r"^[a-zA-Z0-9!\-_.*'()]+$")
_CACHE_MAX = 65536
_DROPPED = ""  # cache value for a stream the rules drop


class NoPushTarget(LookupError):
    """The main port's push has no instance to go to: none runs, or several and none is ``default``."""


def check_tenant(header: str | None) -> str:
    """The tenant of an ``X-Scope-OrgID`` header ("" when absent), validated as dskit does."""
    if not header:
        return ""
    ids = {part.split(":", 1)[0] for part in header.split("|")}
    if len(ids) != 1:
        raise HTTPError(400, "multiple org IDs present")
    tenant = ids.pop()
    if len(tenant.encode()) > 150:
        raise HTTPError(400, "tenant ID is too long: max 150 characters")
    if tenant in (".", "..") or not _TENANT_CHARS.match(tenant):
        raise HTTPError(400, f"tenant ID '{tenant}' contains unsupported character or is a reserved name")
    return tenant


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding (none/snappy as-is, gzip, deflate), never inflating past ``limit``."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "snappy", "identity"):
        return body
    if enc == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif enc == "deflate":
        d = zlib.decompressobj()
    else:
        raise HTTPError(400, f'Content-Encoding "{encoding}" not supported')
    try:
        out = d.decompress(body, limit + 1)
        if len(out) > limit:
            raise HTTPError(413, f"message size too large than max ({len(out)} vs {limit})")
        if not d.eof:
            raise HTTPError(400, f"{enc}: unexpected EOF")
    except zlib.error as exc:
        raise HTTPError(400, f"{enc}: {exc}") from None
    return out


def media_type(content_type: str | None) -> str:
    if not content_type:
        raise HTTPError(400, "mime: no media type")
    return content_type.split(";", 1)[0].strip().lower()


def decode_protobuf(body: bytes, limit: int) -> tuple[PushRequest, bytes]:
    """(request, its uncompressed bytes) of a snappy-block PushRequest; 413 before decompressing anything
    larger than ``limit``."""
    if len(body) > limit:
        raise HTTPError(413, f"message size too large than max ({len(body)} vs {limit})")
    try:
        size = snappy_declared_length(body)
    except CodecError as exc:
        raise HTTPError(400, str(exc)) from None
    if size > limit:
        raise HTTPError(413, f"message size too large than max ({size} vs {limit})")
    try:
        raw = snappy.uncompress(body)
        return PushRequest.FromString(raw), raw
    except Exception as exc:  # corrupt snappy or protobuf: the decoder's words
        raise HTTPError(400, f"{type(exc).__name__}: {exc}") from None


def check_timestamps(req: PushRequest) -> None:
    """400 for an entry whose timestamp Loki's decoder refuses (outside [0001-01-01, 10000-01-01) or nanos
    outside [0, 1e9)): stored, it would make Loki refuse every batch it is sent in. Only kept timestamps are
    checked (a re-stamped push drops its incoming ones unread), and walking the entries costs about three
    times a decode, so it runs only when a byte scan (``may_hold_bad_timestamp``) finds a suspect."""
    lo, hi = MIN_SECONDS, MAX_SECONDS
    for stream in req.streams:
        for e in stream.entries:
            ts = e.timestamp
            seconds, nanos = ts.seconds, ts.nanos
            if seconds < lo:
                raise HTTPError(400, f"timestamp: seconds:{seconds} nanos:{nanos} before 0001-01-01")
            if seconds >= hi:
                raise HTTPError(400, f"timestamp: seconds:{seconds} nanos:{nanos} after 10000-01-01")
            if not 0 <= nanos < 1_000_000_000:
                raise HTTPError(400, f"timestamp: seconds:{seconds} nanos:{nanos}: nanos not in range [0, 1e9)")


@dataclass
class Accepted:
    """What a push leaves to store: its snappy-block PushRequest (``body``), how many streams and entries
    that holds, and what went wrong per stream. ``request()`` parses it only for whoever needs objects."""

    body: bytes
    streams: int
    entries: int
    errors: list[str] = field(default_factory=list)
    raw: bytes | None = None  # the uncompressed PushRequest, when at hand
    parsed: PushRequest | None = None

    def request(self) -> PushRequest:
        if self.parsed is None:
            self.parsed = PushRequest.FromString(self.raw if self.raw is not None else snappy.uncompress(self.body))
        return self.parsed


def _stamp(now_ns: int | None) -> tuple[int, int]:
    return divmod(now_ns if now_ns is not None else time.time_ns(), 1_000_000_000)


class PushRules:
    """Static labels, relabeling and timestamp handling of one push target. Label results are cached
    by the incoming label string, so a repeated stream costs one dict lookup."""

    def __init__(self, labels: Mapping[str, str] | None = None,
                 relabel_configs: Sequence[RelabelConfig] = (), use_incoming_timestamp: bool = False) -> None:
        self.labels = dict(labels or {})
        self.relabeler = Relabeler(relabel_configs)
        self.use_incoming_timestamp = use_incoming_timestamp
        self._cache: dict[str, str | LabelParseError] = {}
        self._fields: dict[str, bytes] = {}

    def process_labels(self, text: str) -> str | LabelParseError:
        """The canonical stored label string for an incoming one ("" = dropped), or the parse error."""
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        try:
            parsed = parse_labels(text)
            bad = next((name for name in parsed if "\x00" in name), None)
            if bad is not None:
                raise LabelParseError(f"invalid label name {bad!r}: contains NUL")
        except LabelParseError as exc:
            result: str | LabelParseError = exc
        else:
            result = self.final_labels(parsed)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[text] = result
        return result

    def final_labels(self, parsed: dict[str, str]) -> str:
        parsed.update(self.labels)
        if self.relabeler:
            out = self.relabeler.process(parsed)
            if not out:
                return _DROPPED
            parsed = out
        kept = {k: v for k, v in parsed.items() if not k.startswith("__")}
        return format_labels(kept) if kept else _DROPPED + "\x00empty"

    def label_field(self, labels: str) -> bytes:
        """The encoded labels field (StreamAdapter field 1) of a canonical label string, cached."""
        out = self._fields.get(labels)
        if out is None:
            if len(self._fields) >= _CACHE_MAX:
                self._fields.clear()
            out = self._fields[labels] = field_bytes(0x0A, labels.encode())
        return out

    def _keep(self, text: str, errors: list[str]) -> str | None:
        """The stored label string of a stream, or None (skipped; a reason added to ``errors``)."""
        result = self.process_labels(text)
        if isinstance(result, LabelParseError):
            errors.append(f"{result} (stream {text!r})")
            return None
        if not result or result.startswith("\x00"):
            if result:
                errors.append(f"stream {text!r} has no labels left after relabeling")
            return None
        return result

    def ingest(self, body: bytes, content_type: str | None, content_encoding: str | None, limit: int,
               now_ns: int | None = None) -> Accepted:
        """Decode a push body and apply the rules: what to store, and the per-stream errors."""
        mtype = media_type(content_type)
        raw = decode_content(body, content_encoding, limit)
        if mtype == "application/json":
            return self._json(raw, limit, now_ns)
        return self._protobuf(raw, limit, now_ns)

    def _json(self, body: bytes, limit: int, now_ns: int | None) -> Accepted:
        if len(body) > limit:
            raise HTTPError(413, f"message size too large than max ({len(body)} vs {limit})")
        stamp = None if self.use_incoming_timestamp else stamp_field(*_stamp(now_ns))
        parts: list[bytes] = []
        errors: list[str] = []
        entries = streams = 0
        try:
            for labels, values in json_streams(body):
                encoded, size, count = encode_entries(values, stamp)
                kept = self._keep(format_labels(labels), errors)
                if kept is None:
                    continue
                lf = self.label_field(kept)
                parts += (b"\x0a", encode_varint(len(lf) + size), lf)
                parts += encoded
                entries += count
                streams += 1
        except JsonPushError as exc:
            raise HTTPError(400, str(exc)) from None
        raw = b"".join(parts)
        return Accepted(snappy.compress(raw) if streams else b"", streams, entries, errors, raw)

    def _protobuf(self, body: bytes, limit: int, now_ns: int | None) -> Accepted:
        req, raw = decode_protobuf(body, limit)
        if self.use_incoming_timestamp and may_hold_bad_timestamp(raw):
            check_timestamps(req)
        errors: list[str] = []
        kept: list[str | None] = [self._keep(stream.labels, errors) for stream in req.streams]
        entries = streams = 0
        for stream, labels in zip(req.streams, kept, strict=True):
            if labels is not None:
                entries += len(stream.entries)
                streams += 1
        if not self.use_incoming_timestamp:
            try:
                out = self._restamp(raw, kept, stamp_field(*_stamp(now_ns)))
            except (CodecError, IndexError):  # not the layout the fast path walks (WireError too): use upb
                self._restamp_upb(req, kept, now_ns)
                out = req.SerializeToString()
            return Accepted(snappy.compress(out) if streams else b"", streams, entries, errors, out)
        if all(labels == stream.labels for stream, labels in zip(req.streams, kept, strict=True)):
            return Accepted(body, streams, entries, errors, raw, req)  # stored as received
        for index in range(len(kept) - 1, -1, -1):
            labels = kept[index]
            if labels is None:
                del req.streams[index]
            else:
                req.streams[index].labels = labels
        out = req.SerializeToString()
        return Accepted(snappy.compress(out) if streams else b"", streams, entries, errors, out, req)

    def _restamp(self, raw: bytes, kept: list[str | None], stamp: bytes) -> bytes:
        """Re-stamp every entry and set the stored labels at the byte level (no message per entry)."""
        parts: list[bytes] = []
        index, pos, end = 0, 0, len(raw)
        while pos < end:
            tag, start, stop = next_field(raw, pos)
            if tag == 0x0A:  # a stream
                labels = kept[index]
                index += 1
                if labels is not None:
                    parts.append(restamp_stream(raw, start, stop, self.label_field(labels), stamp))
            else:  # `format` or unknown fields: kept
                parts.append(raw[pos:stop])
            pos = stop
        if index != len(kept):
            raise WireError("stream count differs from the parsed request")
        return b"".join(parts)

    @staticmethod
    def _restamp_upb(req: PushRequest, kept: list[str | None], now_ns: int | None) -> None:
        seconds, nanos = _stamp(now_ns)
        for index in range(len(kept) - 1, -1, -1):
            labels = kept[index]
            if labels is None:
                del req.streams[index]
                continue
            stream = req.streams[index]
            stream.labels = labels
            for e in stream.entries:
                ts = e.timestamp
                ts.seconds = seconds
                ts.nanos = nanos

    def raw_request(self, body: bytes, now_ns: int | None = None) -> PushRequest:
        """``/raw``: one entry per non-blank line, stamped now, labels from the rules (ours: relabel too)."""
        labels = self.final_labels({})
        if not labels or labels.startswith("\x00"):
            raise HTTPError(400, "no labels: the raw endpoint needs static labels that survive relabeling")
        seconds, nanos = divmod(now_ns if now_ns is not None else time.time_ns(), 1_000_000_000)
        req = PushRequest()
        stream = req.streams.add()
        stream.labels = labels
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise HTTPError(400, f"invalid UTF-8 at byte {exc.start}") from None
        for line in text.split("\n"):
            line = line.rstrip("\r")
            if not line:
                continue
            e = stream.entries.add()
            e.timestamp.seconds = seconds
            e.timestamp.nanos = nanos
            e.line = line
        if not stream.entries:
            del req.streams[0]
        return req
