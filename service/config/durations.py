"""Durations as Prometheus and Go write them.

Prometheus fields (`scrape_interval`, `remote_timeout`, ...) use model.Duration: integer units from `ms`
to `y`, printed as `1m30s`. Grafana Agent's own fields (`wal_truncate_frequency`, ...) use Go's time.Duration:
decimal units from `ns` to `h`, printed as `1h0m0s`. Both are values in seconds here.
"""

from __future__ import annotations

import re

from service.config.errors import ConfigError

_PROM_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PROM_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class Duration(float):
    """A Prometheus duration (model.Duration), in seconds."""

    @classmethod
    def parse(cls, text: str) -> Duration:
        return cls(parse_prom_duration(text))

    def __str__(self) -> str:
        return format_prom_duration(float(self))

    __repr__ = __str__


class GoDuration(Duration):
    """A Go time.Duration, in seconds. Prometheus syntax (`1d`) too, as configs mix them."""

    @classmethod
    def parse(cls, text: str) -> GoDuration:
        try:
            return cls(parse_go_duration(text))
        except ConfigError as go_error:
            try:
                return cls(parse_prom_duration(text))
            except ConfigError:
                raise go_error from None

    def __str__(self) -> str:
        return format_go_duration(float(self))

    __repr__ = __str__


def parse_prom_duration(text: str) -> float:
    text = text.strip()
    if text == "0":
        return 0.0
    match = _PROM_RE.match(text)
    if not text or not match:
        raise ConfigError(f'not a valid duration string: "{text}"')
    total = 0.0
    for value, unit in zip(match.groups(), _PROM_UNITS.values(), strict=True):
        if value:
            total += int(value) * unit
    return total


def parse_go_duration(text: str) -> float:
    raw = text.strip()
    sign = 1.0
    body = raw
    if body[:1] in ("+", "-"):  # not `in "+-"`: the empty string is in every string
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _GO_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ConfigError(f'time: invalid duration "{raw}"')
    return sign * total


def format_prom_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in _PROM_UNITS.items():
        size_ms = round(size * 1000)
        if ms >= size_ms:
            out.append(f"{ms // size_ms}{unit}")
            ms %= size_ms
    return "".join(out)


def format_go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): `1h0m0s`, `1m30s`, `1.5s`, `300ms`."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    ns = round(abs(seconds) * 1e9)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size or unit == "ns":
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
