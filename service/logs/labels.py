"""Loki label strings: parse what Alloy accepts, write the canonical form ``loki.write`` sends.

Accepted (PromQL ``ParseMetric`` grammar): an optional metric name before the braces (kept as
``__name__``), ``{}`` or an empty string (the empty set), a trailing comma, names as identifiers or
double-quoted UTF-8 strings, values in double quotes, single quotes or backticks (raw), Go escapes.
Written: names sorted, ``{a="x", b="y"}``, values quoted with Go's ``strconv.Quote`` rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_IDENT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = re.compile(r"[ \t\r\n]*")
_NEEDS_QUOTING = re.compile(r'[\x00-\x1f"\\\x7f-\x9f\u2028\u2029\ufeff]')
_SIMPLE_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", '"': '"', "'": "'"}
_QUOTE_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
              "\\": "\\\\", '"': '\\"'}


class LabelParseError(ValueError):
    """A label string that cannot be parsed; the message says where and why."""


def go_quote(value: str) -> str:
    """``strconv.Quote`` for the characters label values carry."""
    if not _NEEDS_QUOTING.search(value):
        return '"' + value + '"'
    out = []
    for ch in value:
        esc = _QUOTE_ESC.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable() and ch not in "\ufeff":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def format_labels(labels: Mapping[str, str]) -> str:
    """The canonical label string: sorted names, ``{a="x", b="y"}`` (``{}`` when empty)."""
    if not labels:
        return "{}"
    return "{" + ", ".join(
        f"{name if _IDENT.fullmatch(name) else go_quote(name)}={go_quote(labels[name])}" for name in sorted(labels)
    ) + "}"


def _unquote(text: str, pos: int) -> tuple[str, int]:
    """The Go string literal starting at ``text[pos]``; returns (value, position after it)."""
    quote = text[pos]
    if quote == "`":
        end = text.find("`", pos + 1)
        if end < 0:
            raise LabelParseError(f"1:{pos + 1}: parse error: unterminated raw string")
        return text[pos + 1:end], end + 1
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\n":
            break
        if ch != "\\":
            j = i
            while j < n and text[j] not in (quote, "\\", "\n"):
                j += 1
            out.append(text[i:j])
            i = j
            continue
        if i + 1 >= n:
            break
        esc = text[i + 1]
        simple = _SIMPLE_ESC.get(esc)
        if simple is not None:
            out.append(simple)
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(esc)
        try:
            if width is not None:
                out.append(chr(int(text[i + 2:i + 2 + width], 16)) if len(text[i + 2:i + 2 + width]) == width
                           else _bad_escape(i))
                i += 2 + width
                continue
            if esc in "01234567":
                out.append(chr(int(text[i + 1:i + 4], 8)))
                i += 4
                continue
        except ValueError:
            pass
        _bad_escape(i)
    raise LabelParseError(f"1:{pos + 1}: parse error: unterminated quoted string")


def _bad_escape(i: int) -> str:
    raise LabelParseError(f"1:{i + 1}: parse error: unknown escape sequence")


def parse_labels(text: str) -> dict[str, str]:
    """Parse a label string (see the module doc). Raises :class:`LabelParseError`."""
    n = len(text)
    i = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    labels: dict[str, str] = {}
    if i == n:
        return labels
    m = _METRIC.match(text, i)
    if m is not None:
        labels["__name__"] = m.group(0)
        i = _SPACE.match(text, m.end()).end()  # type: ignore[union-attr]
        if i == n:
            return labels
    if text[i] != "{":
        raise LabelParseError(f'1:{i + 1}: parse error: unexpected character {text[i]!r}, expected "{{"')
    i += 1
    while True:
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if i >= n:
            raise LabelParseError(f'1:{i + 1}: parse error: unexpected end of input inside braces')
        if text[i] == "}":
            i += 1
            break
        if text[i] == '"':
            name, i = _unquote(text, i)
        else:
            m = _IDENT.match(text, i)
            if m is None:
                raise LabelParseError(f'1:{i + 1}: parse error: unexpected character {text[i]!r} in label set, '
                                      'expected identifier or "}"')
            name, i = m.group(0), m.end()
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if i >= n or text[i] != "=":
            got = repr(text[i]) if i < n else "end of input"
            raise LabelParseError(f'1:{i + 1}: parse error: unexpected {got} in label matching, expected "="')
        i = _SPACE.match(text, i + 1).end()  # type: ignore[union-attr]
        if i >= n or text[i] not in "\"'`":
            got = repr(text[i]) if i < n else "end of input"
            raise LabelParseError(f"1:{i + 1}: parse error: unexpected {got} in label matching, expected string")
        value, i = _unquote(text, i)
        if name in labels:
            raise LabelParseError(f"1:{i + 1}: parse error: duplicate label name {name!r}")
        labels[name] = value
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] == "}":
            continue
        else:
            got = repr(text[i]) if i < n else "end of input"
            raise LabelParseError(f'1:{i + 1}: parse error: unexpected {got} in label set, expected "," or "}}"')
    if _SPACE.match(text, i).end() != n:  # type: ignore[union-attr]
        raise LabelParseError(f"1:{i + 1}: parse error: unexpected characters after the label set")
    return labels
