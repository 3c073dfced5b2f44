"""Prometheus text format (0.0.4) and OpenMetrics 1.0 parsing, cut for a scrape cache.

`split_samples(body, openmetrics)` yields `(key, value, timestamp_ms | None)` for every sample line, where
`key` is the raw series text (`name{labels}` exactly as written). Splitting a line costs a few byte
operations; the labels inside `key` are parsed (and validated) only by `parse_series(key)`, which a scrape
cache calls on a miss. Any malformed line raises `ParseError`, failing the whole scrape as Prometheus does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

OPENMETRICS_TYPE = "application/openmetrics-text"
# The Accept header Prometheus 2.42 sends.
ACCEPT_HEADER = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                 "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

_TEXT_TYPES = frozenset((b"counter", b"gauge", b"histogram", b"summary", b"untyped"))
_OM_TYPES = frozenset((b"counter", b"gauge", b"histogram", b"gaugehistogram", b"summary", b"info", b"stateset",
                       b"unknown"))
_METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
_BLANK = b" \t"


class ParseError(ValueError):
    """The exposition is malformed; the scrape fails."""


def is_openmetrics(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == OPENMETRICS_TYPE


def parse_value(text: bytes) -> float:
    """Go's strconv.ParseFloat, near enough: no digit separators, hex floats allowed."""
    try:
        if b"_" in text:
            raise ValueError
        return float(text)
    except ValueError:
        pass
    try:
        if text.lstrip(b"+-")[:2].lower() != b"0x":
            raise ValueError
        return float.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ParseError(f"strconv.ParseFloat: parsing {text.decode(errors='replace')!r}: invalid syntax") from None


def _parse_ts(text: bytes, openmetrics: bool) -> int:
    if openmetrics:
        seconds = parse_value(text)
        if not math.isfinite(seconds):
            raise ParseError("invalid timestamp")
        return int(seconds * 1000)
    if b"_" in text:
        raise ParseError(f"invalid timestamp {text.decode(errors='replace')!r}")
    try:
        value = int(text)
    except ValueError:
        raise ParseError(f"invalid timestamp {text.decode(errors='replace')!r}") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise ParseError("timestamp out of range")
    return value


def _comment(line: bytes, openmetrics: bool) -> bool:
    """Validate a `#` line; True when it is OpenMetrics' `# EOF`."""
    parts = line[1:].split(None, 3) if not openmetrics else line[2:].split(b" ", 2)
    if openmetrics and not line.startswith(b"# "):
        raise ParseError(f"invalid comment line {line[:60]!r}")
    kind = parts[0] if parts else b""
    if kind == b"EOF" and openmetrics:
        if len(parts) != 1:
            raise ParseError("invalid EOF line")
        return True
    if kind not in (b"HELP", b"TYPE", b"UNIT"):
        if openmetrics:
            raise ParseError(f"invalid comment line {line[:60]!r}")
        return False  # a plain comment
    if kind == b"UNIT" and not openmetrics:
        return False
    if len(parts) < 2 or not _METRIC_NAME.fullmatch(parts[1]):
        raise ParseError(f"invalid metric name in {kind.decode()} line")
    if kind == b"TYPE":
        kinds = _OM_TYPES if openmetrics else _TEXT_TYPES
        if len(parts) < 3 or parts[2].strip(_BLANK) not in kinds:
            raise ParseError(f"invalid metric type in line {line[:80]!r}")
    return False


def _find_label_end(line: bytes, start: int) -> int:
    """Index just after the `}` closing the label set that opens at `start` (quote aware)."""
    i, n = start + 1, len(line)
    in_quote = False
    while i < n:
        c = line[i]
        if in_quote:
            if c == 92:  # backslash
                i += 1
            elif c == 34:
                in_quote = False
        elif c == 34:
            in_quote = True
        elif c == 125:
            return i + 1
        i += 1
    raise ParseError("unterminated label set")


def _split_slow(line: bytes) -> tuple[bytes, list[bytes]]:
    """Key and the tokens after it, for lines the fast path cannot split (OpenMetrics exemplars)."""
    brace = line.find(b"{")
    space = min((p for p in (line.find(b" "), line.find(b"\t")) if p >= 0), default=-1)
    if brace >= 0 and (space < 0 or brace < space):
        end = _find_label_end(line, brace)
        return line[:end], line[end:].split(b" # ", 1)[0].split()
    if space < 0:
        raise ParseError(f"expected value after metric in line {line[:80]!r}")
    return line[:space], line[space:].split(b" # ", 1)[0].split()


def split_samples(body: bytes, openmetrics: bool) -> Iterator[tuple[bytes, float, int | None]]:
    """(raw series key, value, timestamp in ms or None) per sample line; raises ParseError."""
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    eof = False
    for line in lines:
        if eof:
            raise ParseError("unexpected data after # EOF")
        if not line:
            if openmetrics:
                raise ParseError("unexpected empty line")
            continue
        if line[0] == 35:  # '#'
            eof = _comment(line, openmetrics)
            continue
        if openmetrics and b"#" in line:
            key, rest = _split_slow(line)
        else:
            i = line.rfind(b"}")
            if i >= 0:
                key, rest = line[: i + 1], line[i + 1:].split()
            else:
                rest = line.split()
                if not rest:
                    continue
                key = rest.pop(0)
        if not rest or len(rest) > 2:
            raise ParseError(f"expected value after metric in line {line[:80]!r}")
        value = parse_value(rest[0])
        yield key, value, (_parse_ts(rest[1], openmetrics) if len(rest) == 2 else None)
    if openmetrics and not eof:
        raise ParseError("data does not end with # EOF")


_UNESCAPE = {ord("\\"): "\\", ord('"'): '"', ord("n"): "\n"}


def _unescape(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("invalid UTF-8 label value") from None
    if "\\" not in text:
        return text
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            out.append(_UNESCAPE.get(ord(nxt), "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_series(key: bytes, openmetrics: bool = False) -> list[tuple[str, str]]:
    """The labels of a raw series key, `__name__` first then as written; raises ParseError."""
    m = _METRIC_NAME.match(key)
    if not m:
        raise ParseError(f"invalid metric name in {key[:80]!r}")
    labels = [("__name__", m.group().decode())]
    pos, n = m.end(), len(key)
    if not openmetrics:
        while pos < n and key[pos] in _BLANK:
            pos += 1
    if pos == n:
        return labels
    if key[pos] != 123:  # '{'
        raise ParseError(f"unexpected character after metric name in {key[:80]!r}")
    pos += 1
    while True:
        if not openmetrics:
            while pos < n and key[pos] in _BLANK:
                pos += 1
        if pos < n and key[pos] == 125:
            pos += 1
            break
        lm = _LABEL_NAME.match(key, pos)
        if not lm:
            raise ParseError(f"invalid label name in {key[:80]!r}")
        pos = lm.end()
        if not openmetrics:
            while pos < n and key[pos] in _BLANK:
                pos += 1
        if key[pos:pos + 2] != b'="' and not (not openmetrics and key[pos:pos + 1] == b"="):
            raise ParseError(f"expected '=\"' after label name in {key[:80]!r}")
        pos += 1
        if not openmetrics:
            while pos < n and key[pos] in _BLANK:
                pos += 1
        if pos >= n or key[pos] != 34:
            raise ParseError(f"expected quoted label value in {key[:80]!r}")
        start = pos + 1
        end = start
        while end < n and key[end] != 34:
            end += 2 if key[end] == 92 else 1
        if end >= n:
            raise ParseError(f"unterminated label value in {key[:80]!r}")
        labels.append((lm.group().decode(), _unescape(key[start:end])))
        pos = end + 1
        if not openmetrics:
            while pos < n and key[pos] in _BLANK:
                pos += 1
        if pos < n and key[pos] == 44:  # ','
            pos += 1
            continue
        if pos < n and key[pos] == 125:
            pos += 1
            break
        raise ParseError(f"expected ',' or '}}' in label set of {key[:80]!r}")
    if pos != n:
        raise ParseError(f"unexpected text after label set in {key[:80]!r}")
    return labels
