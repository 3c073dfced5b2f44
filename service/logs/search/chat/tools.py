"""The tools chat answers are grounded in, over the log store, with their OpenAI function schemas.

Unlike Loggator's `search_logs`, ours takes a time range (`from`/`to` in Unix ms, or `minutes` back from now)
and counts are exact. Every tool returns plain JSON data and a one-line summary for `toolCalls`.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from service.logs.search.cluster import SearchBackend
from service.logs.search.query import Filters
from service.logs.search.store import ERROR_WORDS

MAX_MINUTES = 366 * 24 * 60

_RANGE_PROPS = {
    "from": {"type": "integer", "description": "Start of the time range, Unix milliseconds (inclusive)."},
    "to": {"type": "integer", "description": "End of the time range, Unix milliseconds (inclusive)."},
    "minutes": {"type": "integer", "description": "Look back this many minutes from now (instead of from/to)."},
}

SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "search_logs",
        "description": "Search log lines, newest first. Words match case-insensitively; the last word also as a "
                       "prefix. Use errors_only to find error lines. Always give a time range when the user "
                       "mentions one.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "Words to find; empty for all lines."},
            "source": {"type": "string", "description": "Only this source (container) name."},
            "stream": {"type": "string", "enum": ["stdout", "stderr"]},
            "errors_only": {"type": "boolean",
                            "description": "Only lines mentioning error, exception, fail, fatal or panic."},
            "limit": {"type": "integer", "description": "At most this many lines (1-100, default 20)."},
            **_RANGE_PROPS}, "required": []}}},
    {"type": "function", "function": {
        "name": "list_sources",
        "description": "List log sources (containers) with their exact line counts, most lines first.",
        "parameters": {"type": "object", "properties": {}, "required": []}}},
    {"type": "function", "function": {
        "name": "source_detail",
        "description": "Details of one log source: label sets, streams, counts, first and last seen.",
        "parameters": {"type": "object", "properties": {
            "source": {"type": "string", "description": "Source name or id."}}, "required": ["source"]}}},
    {"type": "function", "function": {
        "name": "source_health",
        "description": "Error rate of a source over a window: lines mentioning error, exception, fail, fatal or "
                       "panic over all lines, with the most recent error lines.",
        "parameters": {"type": "object", "properties": {
            "source": {"type": "string", "description": "Source name or id."},
            "minutes": {"type": "integer", "description": "Window in minutes back from now (default 60)."}},
            "required": ["source"]}}},
]

NAMES = [s["function"]["name"] for s in SCHEMAS]


class ToolError(Exception):
    """Bad tool arguments: reported back to the model (or the user) as the tool's result."""


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(args: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = args.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ToolError(f"{name} must be an integer")
    try:
        value = int(value)
    except ValueError:
        raise ToolError(f"{name} must be an integer") from None
    return max(low, min(high, value))


def time_range(args: dict[str, Any]) -> tuple[int | None, int | None]:
    minutes = _int(args, "minutes", None, 1, MAX_MINUTES)
    if minutes is not None:
        now = int(time.time() * 1000)
        return now - minutes * 60_000, now
    return _int(args, "from", None, 0, 2**53), _int(args, "to", None, 0, 2**53)


class Tools:
    def __init__(self, store: SearchBackend, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    async def call(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Run a tool: (result, summary). Unknown tools and bad arguments answer an error result."""
        try:
            if name == "search_logs":
                return await self.search_logs(args)
            if name == "list_sources":
                return await self.list_sources()
            if name == "source_detail":
                return await self.source_detail(args)
            if name == "source_health":
                return await self.source_health(args)
            raise ToolError(f"unknown tool {name}")
        except ToolError as exc:
            return {"error": str(exc)}, f"error: {exc}"

    async def _source_name(self, args: dict[str, Any], required: bool) -> str | None:
        raw = args.get("source")
        if raw in (None, ""):
            if required:
                raise ToolError("source is required")
            return None
        found = await self.store.source(self.tenant, str(raw))
        if found is None:
            raise ToolError(f"unknown source {raw}")
        return found["name"]

    async def search_logs(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        source = await self._source_name(args, False)
        stream = args.get("stream") or None
        if stream not in (None, "stdout", "stderr"):
            raise ToolError("stream must be stdout or stderr")
        start, end = time_range(args)
        f = Filters(tenant=self.tenant, query=str(args.get("query") or "")[:1000], source=source, stream=stream,
                    from_ms=start, to_ms=end, any_words=ERROR_WORDS if args.get("errors_only") else ())
        total, logs = await self.store.search(f, _int(args, "limit", 20, 1, 100) or 20, 0)
        result = {"total": total, "returned": len(logs), "from": iso(start), "to": iso(end),
                  "logs": [{"timestamp": iso(e["timestamp"]), "container": e["container"], "stream": e["stream"],
                            "message": e["message"][:2000]} for e in logs]}
        return result, f"{total} matching lines, {len(logs)} returned"

    async def list_sources(self) -> tuple[dict[str, Any], str]:
        sources = await self.store.sources(self.tenant)
        result = {"total": len(sources), "sources": [
            {"name": s["name"], "id": s["id"], "count": s["count"], "lastSeen": iso(s["lastSeen"])}
            for s in sources[:200]]}
        return result, f"{len(sources)} sources"

    async def source_detail(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        raw = args.get("source")
        if raw in (None, ""):
            raise ToolError("source is required")
        found = await self.store.source(self.tenant, str(raw))
        if found is None:
            raise ToolError(f"unknown source {raw}")
        result = {**found, "firstSeen": iso(found["firstSeen"]), "lastSeen": iso(found["lastSeen"])}
        return result, f"{found['name']}: {found['count']} lines"

    async def source_health(self, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        source = await self._source_name(args, True)
        minutes = _int(args, "minutes", 60, 1, 1440) or 60
        now = int(time.time() * 1000)
        base = Filters(tenant=self.tenant, source=source, from_ms=now - minutes * 60_000, to_ms=now)
        total = await self.store.count(base)
        errors_f = Filters(**{**base.__dict__, "any_words": ERROR_WORDS})
        errors, recent = await self.store.search(errors_f, 5, 0)
        rate = errors / total * 100 if total else 0.0
        result = {"source": source, "minutes": minutes, "totalLogs": total, "errorLogs": errors,
                  "errorRate": round(rate, 2),
                  "recentErrors": [{"timestamp": iso(e["timestamp"]), "message": e["message"][:500]}
                                   for e in recent]}
        return result, f"{source}: {errors}/{total} error lines ({rate:.2f}%) in {minutes} min"
