"""Regular expressions from configs and queries, matched by RE2 (the `google-re2` package).

Why RE2: a pattern from a config or a query runs on every label set or log line the node handles. RE2
matches in time linear in the input, whatever the pattern, as Go's regexp (Prometheus, Loki, Promtail) does.
Python's backtracking `re` takes exponential time on patterns such as `(a|a)*b`, which froze a node.
RE2's syntax is Go's, so no translation is needed either.

Differences from Go's regexp that matter here, and how they are handled:
- `\\C` (any byte) is RE2-only: refused, as Go refuses it.
- RE2's error texts differ from Go's: they are reworded to Go's (`error parsing regexp: missing closing ):
  ...`), which is what Prometheus and the Agent print.
- `(?<name>...)` is accepted (Go accepts it since 1.22; the Agent's last releases are built with it).
- Text that is not valid UTF-8 (a Python string with lone surrogates) is matched byte for byte; RE2's `.`
  does not match such bytes, where Go's matches U+FFFD. Label values are valid UTF-8 in practice.

The wrapper calls the extension type `re2._re2.RE2` directly: the package's `re`-like layer converts
offsets between characters and bytes on every call (about 10 µs a match); matching bytes and slicing the
groups out of them costs about 1 µs. Group *positions* are therefore not offered, only group texts.
"""

from __future__ import annotations

import weakref
from typing import Any

from re2 import Options
from re2 import _re2 as _ext
from re2 import escape as _escape

_UNANCHORED = _ext.RE2.Anchor.UNANCHORED
_NULL_SPAN = (-1, -1)
_CACHE_ENTRIES = 512  # answers kept per compiled pattern
_CACHED_TEXT = 256  # longer inputs (log lines) are not kept

# RE2's error texts (re2.cc kErrorStrings) → Go's (regexp/syntax ErrorCode), for Prometheus' wording.
_GO_WORDING = {
    "unexpected error": "regexp/syntax: internal error",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
}


class RE2SyntaxError(ValueError):
    """The pattern is not a valid (Go) regular expression. str() reads as Go's regexp.Compile error."""


def _options(capture: bool) -> Any:
    opts = Options()
    opts.log_errors = False  # RE2 would print every rejected user pattern to stderr
    opts.never_capture = not capture
    return opts


_CAPTURE, _PROBE = _options(True), _options(False)


def _compile(pattern: str, options: Any) -> Any:
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise RE2SyntaxError(f"error parsing regexp: invalid UTF-8: `{pattern}`") from None
    rx = _ext.RE2(encoded, options)
    if not rx.ok():
        raise RE2SyntaxError(_go_error(rx.error(), pattern))
    return rx


def _go_error(message: str | bytes, pattern: str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if text.startswith("pattern too large"):
        return f"error parsing regexp: expression too large: `{pattern}`"
    code, _, arg = text.partition(": ")
    if code in _GO_WORDING:
        return f"error parsing regexp: {_GO_WORDING[code]}: `{arg}`"
    return f"error parsing regexp: {text}: `{pattern}`"


def _check_go_only(pattern: str) -> None:
    """Refuse what RE2 accepts and Go does not: the `\\C` escape (outside `\\Q...\\E`)."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c != "\\" or i + 1 >= n:
            i += 1
            continue
        nxt = pattern[i + 1]
        if nxt == "Q":
            end = pattern.find("\\E", i + 2)
            i = n if end < 0 else end + 2
            continue
        if nxt == "C":
            raise RE2SyntaxError("error parsing regexp: invalid escape sequence: `\\C`")
        i += 2


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogatepass")


class Match:
    """The groups of one match (texts only)."""

    __slots__ = ("_data", "_names", "_spans")

    def __init__(self, data: bytes, spans: list[tuple[int, int]], names: dict[str, int]) -> None:
        self._data, self._spans, self._names = data, spans, names

    def group(self, key: int | str = 0) -> str | None:
        """The text of a group by number or name; None when the group did not take part in the match."""
        index = self._names[key] if isinstance(key, str) else key
        start, end = self._spans[index]
        if start < 0:
            return None
        return _decode(self._data[start:end])


class Regexp:
    """A compiled pattern. `search` finds the leftmost match (Go's FindStringSubmatch); `test` only says
    whether there is one (Go's MatchString), without tracking groups, which is faster."""

    __slots__ = ("__weakref__", "_probe", "_rx", "_searched", "_tested", "groupindex", "groups", "pattern")

    def __init__(self, pattern: str) -> None:
        _check_go_only(pattern)
        self.pattern = pattern
        self._rx = _compile(pattern, _CAPTURE)
        self.groups: int = self._rx.NumberOfCapturingGroups()
        self.groupindex: dict[str, int] = {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in self._rx.NamedCapturingGroups()}
        self._probe = _compile(pattern, _PROBE) if self.groups else self._rx
        # Recent answers by input: relabeling asks about the same label names and values over and over, and
        # a call into RE2 costs about 1 us against 0.1 us for a dict lookup. Bounded, cleared when full.
        self._tested: dict[str, bool] = {}
        self._searched: dict[str, Match | None] = {}

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return compile, (self.pattern,)

    def __repr__(self) -> str:
        return f"Regexp({self.pattern!r})"

    def test(self, text: str) -> bool:
        hit = self._tested.get(text)
        if hit is not None:
            return hit
        data = _encode(text)
        found = self._probe.Match(_UNANCHORED, data, 0, len(data))[0] != _NULL_SPAN
        if len(text) <= _CACHED_TEXT:
            if len(self._tested) >= _CACHE_ENTRIES:
                self._tested.clear()
            self._tested[text] = found
        return found

    def search(self, text: str) -> Match | None:
        try:
            return self._searched[text]
        except KeyError:
            pass
        data = _encode(text)
        spans = self._rx.Match(_UNANCHORED, data, 0, len(data))
        found = None if spans[0] == _NULL_SPAN else Match(data, spans, self.groupindex)
        if len(text) <= _CACHED_TEXT:
            if len(self._searched) >= _CACHE_ENTRIES:
                self._searched.clear()
            self._searched[text] = found
        return found


_cache: weakref.WeakValueDictionary[str, Regexp] = weakref.WeakValueDictionary()


def compile(pattern: str) -> Regexp:
    """Compile `pattern` (unanchored, as Go's regexp.Compile). Raises RE2SyntaxError with Go's wording.

    Equal patterns share one compiled object while it is in use: thousands of configs carry the same few
    relabel regexes (`(.*)` above all)."""
    rx = _cache.get(pattern)
    if rx is None:
        rx = _cache[pattern] = Regexp(pattern)
    return rx


def compile_anchored(pattern: str) -> Regexp:
    """Prometheus' relabel and label-matcher regexp: `^(?:pattern)$`, compiled as that very string (so a
    pattern such as `a)|(b` means what it means in Prometheus)."""
    return compile(f"^(?:{pattern})$")


def escape(text: str) -> str:
    """`text` as a pattern that matches it literally."""
    return str(_escape(text))
