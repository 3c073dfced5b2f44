"""Names in URL paths (config and instance names): matched on the raw (still-escaped) path segment, then
percent-decoded.

`hello%2Fworld` is the name `hello/world`; `+` stays `+`. A name is user data: it is stored as a KV key
suffix and shown, but never used as a file path (WAL directories are derived with wal_dir_for). Shared by the
config API and the remote write receiver, so both read a name the same way.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

MAX_NAME_BYTES = 512


class AnythingConvertor(Convertor[str]):
    """Like `path`, but also matches control characters (decoded `%0A`), so a bad name gets a 400, not 404."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anything", AnythingConvertor())


class InvalidName(ValueError):
    pass


def raw_segment(request: Request, prefix: str) -> str | None:
    """The raw path text after `prefix`, or None when it is empty or holds an unescaped `/` (a 404)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    if not text.startswith(prefix):
        return None
    segment = text[len(prefix):]
    if not segment or "/" in segment:
        return None
    return segment


def decode_name(segment: str) -> str:
    data = unquote_to_bytes(segment)
    try:
        name = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName("config name is not valid UTF-8") from None
    if len(data) > MAX_NAME_BYTES:
        raise InvalidName(f"config name is longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidName("config name contains control characters")
    if not name.strip():
        raise InvalidName("config name is empty")
    return name
