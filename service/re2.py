"""Translate RE2 (Go regexp) syntax to Python `re` syntax where the two differ.

Handled: `$` means end of text (Python's `$` also matches before a final newline), `\\z`, `\\Q...\\E`,
ASCII-only `\\d \\w \\s \\b`, POSIX classes `[[:alpha:]]`, `\\x{10FFFF}`, octal escapes, `(?<name>`,
flag groups `(?i)` in the middle of a pattern (Python only accepts global flags at the start), and `{`
that is not a repetition (a literal in RE2). Rejected, as RE2 rejects them: look-arounds, back-references,
atomic groups, possessive and nested repetition, repetition counts over 1000. Not supported: `\\p{...}`
Unicode classes and the `U` (ungreedy) flag.
"""

from __future__ import annotations

import re

_PERL = {
    "d": "[0-9]", "D": "[^0-9]", "w": "[0-9A-Za-z_]", "W": "[^0-9A-Za-z_]",
    "s": "[\\t\\n\\f\\r ]", "S": "[^\\t\\n\\f\\r ]",
}
_PERL_IN_CLASS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")
_NAMED = re.compile(r"\(\?P?<(\w+)>")
_HEX = re.compile(r"[0-9a-fA-F]{1,8}")
_MAX_REPEAT = 1000
_NONE, _REPEATED, _LAZY = 0, 1, 2


class RE2SyntaxError(ValueError):
    """The pattern is not valid RE2, or uses RE2 syntax this translation does not support."""


class _Frame:
    __slots__ = ("flags_open", "multiline")

    def __init__(self, multiline: bool) -> None:
        self.multiline = multiline
        self.flags_open: list[str] = []  # scoped groups opened for bare `(?flags)` in this group


def translate(pattern: str) -> str:
    """Return a Python `re` pattern matching what RE2 would match for `pattern`."""
    out: list[str] = []
    stack = [_Frame(False)]
    i, n = 0, len(pattern)
    prev = _NONE  # whether the previous token was a repetition operator (or its lazy `?`)
    while i < n:
        c = pattern[i]
        cur = _NONE
        if c == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
        elif c == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
        elif c == "(":
            i = _open_group(pattern, i, out, stack)
        elif c == ")":
            if len(stack) == 1:
                raise RE2SyntaxError(f"unexpected ): `{pattern}`")
            frame = stack.pop()
            out.append(")" * len(frame.flags_open) + ")")
            i += 1
        elif c == "|":
            frame = stack[-1]
            out.append(")" * len(frame.flags_open) + "|" + "".join(frame.flags_open))
            i += 1
        elif c == "$":
            out.append("$" if stack[-1].multiline else "\\Z")
            i += 1
        elif c in "*+?":
            if prev == _LAZY or (prev == _REPEATED and c != "?"):
                raise RE2SyntaxError(f"invalid nested repetition operator: `{pattern[i - 1:i + 1]}`")
            out.append(c)
            cur = _LAZY if prev == _REPEATED else _REPEATED
            i += 1
        elif c == "{":
            m = _REPEAT.match(pattern, i)
            if m is None:
                out.append("\\{")
                i += 1
            else:
                lo, hi = int(m.group(1)), m.group(3)
                if lo > _MAX_REPEAT or (hi and int(hi) > _MAX_REPEAT) or (hi and int(hi) < lo):
                    raise RE2SyntaxError(f"invalid repeat count: `{m.group(0)}`")
                if prev != _NONE:
                    raise RE2SyntaxError(f"invalid nested repetition operator: `{m.group(0)}`")
                out.append(m.group(0))
                cur = _REPEATED
                i = m.end()
        else:
            out.append(c)
            i += 1
        prev = cur
    if len(stack) != 1:
        raise RE2SyntaxError(f"missing closing ): `{pattern}`")
    out.append(")" * len(stack[0].flags_open))
    return "".join(out)


def _open_group(pattern: str, i: int, out: list[str], stack: list[_Frame]) -> int:
    frame = stack[-1]
    if not pattern.startswith("(?", i):
        out.append("(")
        stack.append(_Frame(frame.multiline))
        return i + 1
    m = _NAMED.match(pattern, i)
    if m:
        out.append(f"(?P<{m.group(1)}>")
        stack.append(_Frame(frame.multiline))
        return m.end()
    m = _FLAGS.match(pattern, i)
    if m is None or (not m.group(1) and not m.group(2) and m.group(3) != ":"):
        raise RE2SyntaxError(f"invalid or unsupported Perl syntax: `{pattern[i:i + 3]}`")
    on, off, end = m.group(1), m.group(2) or "", m.group(3)
    if "U" in on + off:
        raise RE2SyntaxError("the ungreedy flag (?U) is not supported")
    if m.group(2) is not None and not off:
        raise RE2SyntaxError(f"missing argument to repetition operator: `{m.group(0)}`")
    multiline = frame.multiline
    if "m" in on:
        multiline = True
    if "m" in off:
        multiline = False
    scoped = "(?" + on + ("-" + off if off else "") + ":"
    if end == ":":
        out.append(scoped)
        stack.append(_Frame(multiline))
    else:
        out.append(scoped)
        frame.flags_open.append(scoped)
        frame.multiline = multiline
    return m.end()


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise RE2SyntaxError("trailing backslash at end of expression")
    c = pattern[i + 1]
    if c == "Q" and not in_class:
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
        return re.escape(literal), len(pattern) if end < 0 else end + 2
    if c in _PERL:
        if in_class:
            return _PERL_IN_CLASS.get(c, "\\" + c), i + 2
        return _PERL[c], i + 2
    if c in "bB" and not in_class:
        return f"(?a:\\{c})", i + 2
    if c == "z" and not in_class:
        return "\\Z", i + 2
    if c == "A" and not in_class:
        return "\\A", i + 2
    if c == "x":
        if pattern.startswith("{", i + 2):
            end = pattern.find("}", i + 3)
            digits = pattern[i + 3:end] if end > 0 else ""
            if not _HEX.fullmatch(digits) or int(digits, 16) > 0x10FFFF:
                raise RE2SyntaxError(f"invalid escape sequence: `{pattern[i:end + 1]}`")
            return f"\\U{int(digits, 16):08x}", end + 1
        return pattern[i:i + 4], i + 4
    if c.isdigit():
        j = i + 1
        if c in "89" or (c != "0" and not (j + 1 < len(pattern) and pattern[j + 1] in "01234567")):
            raise RE2SyntaxError(f"invalid escape sequence: `\\{c}`")
        k = j
        while k < len(pattern) and k < j + 3 and pattern[k] in "01234567":
            k += 1
        return f"\\x{int(pattern[j:k], 8):02x}", k
    if c in "pPCZ":
        raise RE2SyntaxError(f"unsupported escape sequence: `\\{c}`")
    if c.isalnum() and c not in "afnrtv":
        raise RE2SyntaxError(f"invalid escape sequence: `\\{c}`")
    return pattern[i:i + 2], i + 2


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    out = ["["]
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        out.append("^")
        j += 1
    first = True
    while True:
        if j >= len(pattern):
            raise RE2SyntaxError(f"missing closing ]: `{pattern[i:]}`")
        c = pattern[j]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        if c == "\\":
            text, j = _escape(pattern, j, in_class=True)
            out.append(text)
        elif c == "[" and pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2:end] if end > 0 else ""
            if name not in _POSIX:
                raise RE2SyntaxError(f"invalid character class range: `{pattern[j:end + 2]}`")
            out.append(_POSIX[name])
            j = end + 2
        elif c in "[]&~|":
            out.append("\\" + c)
            j += 1
        else:
            out.append(c)
            j += 1
