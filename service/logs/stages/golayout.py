"""Go time layouts ("2006-01-02 15:04:05.000 -0700") compiled to a parser that returns Unix nanoseconds.

The layout is split into Go's standard chunks (the same recognition rules and order as Go's
nextStdChunk), each chunk becomes a regex group, and the matched fields are combined exactly — nanosecond
fractions included, which strptime cannot do. As in Go, a fractional second is accepted right after the
seconds even when the layout does not show one. A time without a zone is read in `location` (UTC unless
given); a layout without a year gets the current year (as Promtail does for syslog-style stamps)."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from service import re2

NAMED_LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
}

_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_TZ_NUM = r"[+-]\d{2}"

# (layout token, regex, field). Longer tokens first where one is a prefix of another, as Go checks them.
_CHUNKS: list[tuple[str, str, str]] = [
    ("January", r"[A-Za-z]+", "month_name"), ("Jan", r"[A-Za-z]{3}", "month_abbr"),
    ("Monday", r"[A-Za-z]+", ""), ("Mon", r"[A-Za-z]{3}", ""), ("MST", r"[A-Za-z]{3,5}|GMT[+-]\d{1,2}", "tzname"),
    ("002", r"\d{3}", "yday"), ("01", r"\d{2}", "month"), ("02", r"\d{2}", "day"), ("03", r"\d{2}", "hour12"),
    ("04", r"\d{2}", "minute"), ("05", r"\d{2}", "second"), ("06", r"\d{2}", "year2"),
    ("15", r"\d{1,2}", "hour"), ("1", r"\d{1,2}", "month"),
    ("2006", r"\d{4}", "year"), ("2", r"\d{1,2}", "day"),
    ("__2", r"[ \d]{2}\d", "yday"), ("_2", r" ?\d{1,2}", "day"),
    ("3", r"\d{1,2}", "hour12"), ("4", r"\d{1,2}", "minute"), ("5", r"\d{1,2}", "second"),
    ("PM", r"AM|PM", "ampm"), ("pm", r"am|pm", "ampm"),
    ("-070000", _TZ_NUM + r"\d{4}", "tz"), ("-07:00:00", _TZ_NUM + r":\d{2}:\d{2}", "tz"),
    ("-0700", _TZ_NUM + r"\d{2}", "tz"), ("-07:00", _TZ_NUM + r":\d{2}", "tz"), ("-07", _TZ_NUM, "tz"),
    ("Z070000", r"Z|" + _TZ_NUM + r"\d{4}", "tz"), ("Z07:00:00", r"Z|" + _TZ_NUM + r":\d{2}:\d{2}", "tz"),
    ("Z0700", r"Z|" + _TZ_NUM + r"\d{2}", "tz"), ("Z07:00", r"Z|" + _TZ_NUM + r":\d{2}", "tz"),
    ("Z07", r"Z|" + _TZ_NUM, "tz"),
]
_FRAC = re.compile(r"[.,](0+|9+)(?!\d)")


def _chunks(layout: str) -> list[tuple[str, str]]:
    """Split a layout into ("lit", text) and (field, regex) chunks."""
    out: list[tuple[str, str]] = []
    lit: list[str] = []
    i = 0
    while i < len(layout):
        if layout.startswith("_2006", i):        # Go: "_2006" is a literal "_" then the year
            lit.append("_")
            i += 1
            continue
        m = _FRAC.match(layout, i)
        if m:
            digits = m.group(1)
            rx = rf"[.,]\d{{{len(digits)}}}" if digits[0] == "0" else r"(?:[.,]\d+)?"
            out.extend([("lit", "".join(lit)), ("frac", rx)])
            lit = []
            i = m.end()
            continue
        for token, rx, name in _CHUNKS:
            if layout.startswith(token, i):
                out.extend([("lit", "".join(lit)), (name or "skip", rx)])
                lit = []
                i += len(token)
                break
        else:
            lit.append(layout[i])
            i += 1
    out.append(("lit", "".join(lit)))
    return [c for c in out if c != ("lit", "")]


def _offset(text: str) -> int:
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes, seconds = int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
    return sign * (hours * 3600 + minutes * 60 + seconds)


def compile_layout(layout: str, location: ZoneInfo | None = None) -> Callable[[str], int]:
    """A parser for `layout` (a Go layout or one of Go's named layouts) returning Unix nanoseconds; it
    raises ValueError when the text does not fit."""
    layout = NAMED_LAYOUTS.get(layout, layout)
    chunks = _chunks(layout)
    parts: list[str] = []
    names: list[str] = []
    for idx, (name, rx) in enumerate(chunks):
        if name == "lit":
            parts.append(re2.escape(rx))
            continue
        group = f"g{len(names)}"
        names.append(name)
        if name == "frac":
            parts.append(f"(?P<{group}>{rx})")
            continue
        parts.append(f"(?P<{group}>{rx})")
        if name == "second" and not (idx + 1 < len(chunks) and chunks[idx + 1][0] == "frac"):
            names.append("frac")
            parts.append(rf"(?P<g{len(names) - 1}>(?:[.,]\d+)?)")
    # RE2: the layout comes from a config, and adjacent chunks such as `\d{1,2}` repeated would make a
    # backtracking matcher take exponential time on a line that does not fit.
    regex = re2.compile_anchored("".join(parts))
    has_year = any(n in ("year", "year2") for n in names)

    def parse(text: str) -> int:
        m = regex.search(text)
        if m is None:
            raise ValueError(f'parsing time "{text}" as "{layout}": cannot parse')
        f: dict[str, str] = {}
        for i, name in enumerate(names):
            value = m.group(f"g{i}")
            if value:
                f[name] = value.strip()
        return _assemble(f, text, has_year, location)

    return parse


def _assemble(f: dict[str, str], text: str, has_year: bool, location: ZoneInfo | None) -> int:
    if "year" in f:
        year = int(f["year"])
    elif "year2" in f:
        yy = int(f["year2"])
        year = yy + (1900 if yy >= 69 else 2000)
    else:
        year = 0
    if "month_name" in f or "month_abbr" in f:
        word = (f.get("month_name") or f["month_abbr"]).lower()
        matches = [i + 1 for i, m in enumerate(_MONTHS) if m == word or ("month_abbr" in f and m[:3] == word)]
        if not matches:
            raise ValueError(f'parsing time "{text}": month out of range')
        month = matches[0]
    else:
        month = int(f.get("month", 1))
    day = int(f.get("day", 1))
    hour = int(f.get("hour", 0))
    if "hour12" in f:
        hour = int(f["hour12"])
        if hour > 12:
            raise ValueError(f'parsing time "{text}": hour out of range')
        if "ampm" in f:
            pm = f["ampm"].lower() == "pm"
            hour = (hour % 12) + (12 if pm else 0)
    minute, second = int(f.get("minute", 0)), int(f.get("second", 0))
    frac = f.get("frac", "")
    nanos = int((frac[1:] + "000000000")[:9]) if frac else 0
    if not has_year:
        year = time.gmtime().tm_year
    try:
        if "yday" in f:
            base = dt.date(year, 1, 1) + dt.timedelta(days=int(f["yday"]) - 1)
            if base.year != year:
                raise ValueError("day-of-year out of range")
            month, day = base.month, base.day
        naive = dt.datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValueError(f'parsing time "{text}": {exc}') from None
    if "tz" in f:
        offset = _offset(f["tz"])
    elif "tzname" in f and (f["tzname"] in ("UTC", "GMT") or f["tzname"].startswith("GMT") or location is None):
        name = f["tzname"]
        offset = int(name[3:]) * 3600 if name.startswith("GMT") and len(name) > 3 else 0
    elif location is not None:
        aware = naive.replace(tzinfo=location)
        delta = aware.utcoffset()
        offset = int(delta.total_seconds()) if delta is not None else 0
    else:
        offset = 0
    return (calendar.timegm(naive.timetuple()) - offset) * 1_000_000_000 + nanos
