"""The built-in offline mode: plain questions parsed into tool calls, answered from the results.

Understands a source named in the question (any known source name, or the word after in/from/for/of),
a time range ("last hour", "last 15 minutes", "past 2 days", "today"), and one of these intents:
ranking sources ("which container logs the most", "list sources"), health ("how healthy is db",
"error rate of api"), details ("details of web"), errors ("errors in nginx in the last hour") and search
("show logs from api containing timeout", quoted text is searched as given).
"""

from __future__ import annotations

import re
import time
from typing import Any

from service.logs.search.chat.tools import MAX_MINUTES, Tools

_UNITS = {"s": 1 / 60, "sec": 1 / 60, "second": 1 / 60, "m": 1, "min": 1, "minute": 1, "h": 60, "hr": 60,
          "hour": 60, "d": 1440, "day": 1440, "w": 10080, "week": 10080}
_RANGE = re.compile(r"\b(?:last|past|previous|recent)\s+(\d+|an?|one)?\s*"
                    r"(seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|[smhdw])\b", re.I)
_CONTAINING = re.compile(r"\b(?:containing|contains|with(?: the)?(?: text| word)?|matching|mentioning|about)\s+"
                         r"(\"[^\"]+\"|'[^']+'|\S+)", re.I)
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'")
_AFTER = re.compile(r"\b(?:in|from|for|of|is|on)\s+(?:the\s+)?([\w.-]+)", re.I)
_STOP = {"the", "last", "past", "a", "an", "logs", "log", "container", "containers", "source", "sources", "my",
         "hour", "minutes", "day", "today", "it", "this", "that", "all"}


def parse_minutes(text: str) -> int | None:
    """The window a question names, in minutes, capped at what the tools search (366 days): "the last
    <20 digits> hours" is answered for that longest window, and says so, instead of overflowing."""
    match = _RANGE.search(text)
    if match:
        amount = match.group(1)
        if amount is None or amount.lower() in ("a", "an", "one"):
            n = 1
        else:  # more digits than any window needs: no int() of a huge string, no float overflow
            n = int(amount) if len(amount) <= 12 else MAX_MINUTES * 60
        unit = match.group(2).lower().rstrip("s") or "s"
        n = min(n, MAX_MINUTES * 60)  # in seconds at the smallest unit: still past the cap below
        return max(1, min(MAX_MINUTES, round(n * _UNITS.get(unit, _UNITS.get(unit[:1], 1)))))
    if re.search(r"\btoday\b", text, re.I):
        t = time.gmtime()
        return t.tm_hour * 60 + t.tm_min + 1
    return None


def find_source(text: str, names: list[str]) -> str | None:
    lowered = text.lower()
    for name in sorted(names, key=len, reverse=True):
        if name and re.search(r"(?<![\w.-])" + re.escape(name.lower()) + r"(?![\w.-])", lowered):
            return name
    for match in _AFTER.finditer(text):
        word = match.group(1)
        if word.lower() not in _STOP and not word.isdigit():
            return word
    return None


def intent(text: str) -> str:
    t = text.lower()
    if re.search(r"\b(which|what|top)\b.*\b(most|least|busiest|noisiest|loudest)\b", t) or \
            re.search(r"\b(list|show|what|which)\b.*\b(sources|containers)\b", t):
        return "rank"
    if re.search(r"\b(health|healthy|error rate|status of|doing)\b", t):
        return "health"
    if re.search(r"\b(detail|details|info|information|labels)\b", t):
        return "detail"
    if _CONTAINING.search(t) or _QUOTED.search(text):
        return "search"
    if re.search(r"\b(errors?|exceptions?|fail\w*|fatal|panics?|crash\w*)\b", t):
        return "errors"
    return "search"


def _lines(logs: list[dict[str, Any]], n: int = 5) -> str:
    return "\n".join(f"- {e['timestamp']} [{e['container']}/{e['stream']}] {e['message'][:300]}" for e in logs[:n])


def _window(minutes: int | None) -> str:
    if minutes is None:
        return ""
    if minutes % 1440 == 0:
        return f" in the last {minutes // 1440} day(s)"
    if minutes % 60 == 0:
        return f" in the last {minutes // 60} hour(s)"
    return f" in the last {minutes} minute(s)"


async def answer(question: str, tools: Tools) -> tuple[str, list[dict[str, Any]]]:
    """(answer text, tool calls made)."""
    calls: list[dict[str, Any]] = []

    async def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
        result, summary = await tools.call(name, args)
        calls.append({"name": name, "arguments": args, "result": summary})
        return result

    sources = (await call("list_sources", {}))["sources"]
    names = [s["name"] for s in sources]
    kind = intent(question)
    minutes = parse_minutes(question)
    source = find_source(question, names)
    if source is not None and source not in names:
        return f"I found no logs from a source named {source}. Known sources: {', '.join(names) or 'none'}.", calls

    if kind == "rank":
        if not sources:
            return "No logs have been received yet.", calls
        top = sources[0]
        listing = "\n".join(f"- {s['name'] or '(unnamed)'}: {s['count']} lines" for s in sources[:10])
        return f"{top['name']} logs the most, with {top['count']} lines.\n{listing}", calls

    if kind in ("health", "detail") and source is None:
        return f"Which source? Known sources: {', '.join(names) or 'none'}.", calls

    if kind == "health":
        h = await call("source_health", {"source": source, "minutes": min(minutes or 60, 1440)})
        text = (f"{source}: {h['errorLogs']} of {h['totalLogs']} lines mention errors in the last "
                f"{h['minutes']} minutes (error rate {h['errorRate']:.2f}%).")
        if h["totalLogs"] == 0:
            text = f"{source} logged nothing in the last {h['minutes']} minutes."
        elif h["errorLogs"] == 0:
            text += " It looks healthy."
        if h["recentErrors"]:
            text += "\nMost recent errors:\n" + "\n".join(
                f"- {e['timestamp']} {e['message'][:300]}" for e in h["recentErrors"])
        return text, calls

    if kind == "detail":
        d = await call("source_detail", {"source": source})
        return (f"{d['name']} (id {d['id']}): {d['count']} lines, streams {', '.join(d['streams']) or 'none'}, "
                f"first seen {d['firstSeen']}, last seen {d['lastSeen']}, {len(d['labelSets'])} label set(s)."), calls

    args: dict[str, Any] = {}
    if source is not None:
        args["source"] = source
    if minutes is not None:
        args["minutes"] = minutes
    what = "lines"
    if kind == "errors":
        args["errors_only"] = True
        what = "error lines"
    else:
        match = _CONTAINING.search(question)
        quoted = _QUOTED.search(question)
        words = match.group(1).strip("\"'") if match else (quoted.group(1) or quoted.group(2) if quoted else "")
        if words:
            args["query"] = words
            what = f"lines containing {words!r}"
        if re.search(r"\bstderr\b", question, re.I):
            args["stream"] = "stderr"
    r = await call("search_logs", args)
    where = f" from {source}" if source else ""
    text = f"Found {r['total']} {what}{where}{_window(minutes)}."
    if r["logs"]:
        text += f" Most recent {min(5, len(r['logs']))}:\n" + _lines(r["logs"])
    return text, calls
