"""Kubernetes label and field selectors, parsed as apimachinery's `labels.Parse` and `fields.ParseSelector`
parse them: the config check rejects what the API server would refuse, before the config is accepted.

The parsed forms are also what the discovery runtime uses to canonicalise a selector (so `a=b,c` and
`c,a==b` share one watch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.config.errors import ConfigError

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_OPS = ("!=", "==", "=", " notin ", " in ", ">", "<")
_NAME_HELP = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character")
_VALUE_HELP = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
               "and must start and end with an alphanumeric character")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: key, operator (`=`, `!=`, `in`, `notin`, `exists`, `!`, `>`, `<`), values."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


def _check_key(key: str) -> None:
    if not key:
        raise ConfigError("unable to parse requirement: name part must be non-empty")
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        raise ConfigError(f'unable to parse requirement: key: Invalid value: "{key}": a qualified name must '
                          "consist of alphanumeric characters, '-', '_' or '.', with an optional DNS "
                          "subdomain prefix and '/'")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ConfigError(f'unable to parse requirement: key: Invalid value: "{key}": prefix part must be a '
                          "lowercase RFC 1123 subdomain")
    if len(name) > 63:
        raise ConfigError(f'unable to parse requirement: key: Invalid value: "{key}": name part must be no '
                          "more than 63 characters")
    if not _NAME.match(name):
        raise ConfigError(f'unable to parse requirement: key: Invalid value: "{key}": {_NAME_HELP}')


def _check_value(value: str) -> None:
    if len(value) > 63:
        raise ConfigError(f'unable to parse requirement: values[0]: Invalid value: "{value}": must be no more '
                          "than 63 characters")
    if value and not _NAME.match(value):
        raise ConfigError(f'unable to parse requirement: values[0]: Invalid value: "{value}": {_VALUE_HELP}')


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError("found ')', expected: identifier or '!'")
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    if depth:
        raise ConfigError("found '', expected: ')'")
    terms.append(text[start:])
    return terms


def _parse_requirement(term: str) -> Requirement:
    term = term.strip()
    if not term:
        raise ConfigError("found '', expected: identifier")
    if term.startswith("!"):
        key = term[1:].strip()
        _check_key(key)
        return Requirement(key, "!")
    padded = f" {term} "
    for op in _LABEL_OPS:
        at = padded.find(op)
        if at < 0:
            continue
        key = padded[:at].strip()
        rest = padded[at + len(op):].strip()
        _check_key(key)
        name = op.strip()
        if name in ("in", "notin"):
            if not (rest.startswith("(") and rest.endswith(")")):
                raise ConfigError(f"found '{rest}', expected: '('")
            values = tuple(v.strip() for v in rest[1:-1].split(","))
            if values == ("",):
                values = ()
            for v in values:
                _check_value(v)
            return Requirement(key, name, tuple(sorted(set(values))))
        if name in (">", "<"):
            if not re.fullmatch(r"-?[0-9]+", rest):
                raise ConfigError("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                  "an integer")
            return Requirement(key, name, (rest,))
        _check_value(rest)
        return Requirement(key, "!=" if name == "!=" else "=", (rest,))
    _check_key(term)
    return Requirement(term, "exists")


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """Requirements of a label selector, sorted by key as apimachinery sorts them; "" selects everything."""
    if not text.strip():
        return ()
    reqs = [_parse_requirement(t) for t in _split_terms(text)]
    return tuple(sorted(reqs, key=lambda r: r.key))


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise ConfigError(f"invalid field selector: invalid escape sequence: {value}")
            out.append(value[i + 1])
            i += 2
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def parse_field_selector(text: str) -> tuple[tuple[str, str, str], ...]:
    """(field, op, value) terms of a field selector, op `=` or `!=`, sorted by field; "" selects all."""
    if not text:
        return ()
    terms = []
    for part in _split_unescaped(text, ","):
        for op in ("!=", "==", "="):
            at = part.find(op)
            if at >= 0:
                terms.append((part[:at], "!=" if op == "!=" else "=", _unescape(part[at + len(op):])))
                break
        else:
            raise ConfigError(f"invalid selector: '{text}'; can't understand '{part}'")
    return tuple(sorted(terms))


def label_selector_text(reqs: tuple[Requirement, ...]) -> str:
    return ",".join(str(r) for r in reqs)


def field_selector_text(terms: tuple[tuple[str, str, str], ...]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return ",".join(f"{f}{op}{esc(v)}" for f, op, v in terms)
