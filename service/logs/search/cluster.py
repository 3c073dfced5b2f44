"""Log search over the whole cluster: this node's store and every other ACTIVE node's, merged exactly.

Pushes reach whichever node a load balancer picks, and each node indexes only what it received, so a node
asked a question asks every ACTIVE peer the same question (same tenant, same filters) in parallel over the
node-to-node client, and merges:

- totals and histogram buckets are sums (every node answers the same bucket edges: the asking node fixes
  them);
- a page is the first ``offset + limit`` entries of every node merged newest first, with the tie-break
  (timestamp desc, node, id desc), a total order that agrees with each node's own order, so paging over the
  merged order returns every entry exactly once;
- sources are merged by name: counts summed, ``lastSeen`` the latest, ``firstSeen`` the earliest.

A peer that does not answer in time is named in ``missing``; the answer is still given, marked partial.
Requests to peers carry the peer header, and a node answers such a request from its own store only.
This module knows nothing of rings: the node hands it the list of peers.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson

from service.http.peers import PEER_HEADER, PeerClient
from service.logs.search.query import Filters

MAX_WINDOW = 10_000  # offset + limit of one cluster-wide page, as far as paging goes
ANY_WORDS_PARAM = "anyWords"  # between nodes only: the chat tools' error-words filter
KEYS_PARAM = "keysOnly"  # between nodes only: entries as {id, timestamp}, for locating a deep page


@dataclass(frozen=True)
class Peer:
    node: str
    address: str


PeersSource = Callable[[], tuple[str, list[Peer]]]  # (this node's id, the other ACTIVE nodes)


class SearchBackend(Protocol):
    """What the search API and the chat tools read: a LogStore, or a ClusterView over many."""

    async def search(self, f: Filters, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]: ...
    async def histogram(self, f: Filters, bucket_ms: int) -> tuple[list[dict[str, int]], int]: ...
    async def count(self, f: Filters) -> int: ...
    async def sources(self, tenant: str) -> list[dict[str, Any]]: ...
    async def source(self, tenant: str, id_or_name: str) -> dict[str, Any] | None: ...
    async def resolve_source_id(self, tenant: str, sid: str) -> str | None: ...


class PeerFailed(Exception):
    """A peer did not give a usable answer (unreachable, timed out, or an error answer)."""


def filter_params(f: Filters) -> dict[str, str]:
    """The query parameters that make a peer apply exactly `f` (tenant goes in a header)."""
    params: dict[str, str] = {"scope": "local"}
    if f.query:
        params["query"] = f.query
    if f.source is not None:
        params["container"] = f.source
    if f.stream is not None:
        params["stream"] = f.stream
    if f.from_ms is not None:
        params["fromTimestamp"] = str(f.from_ms)
    if f.to_ms is not None:
        params["toTimestamp"] = str(f.to_ms)
    if f.any_words:
        params[ANY_WORDS_PARAM] = ",".join(f.any_words)
    return params


def _order_key(node: str, entry: Mapping[str, Any]) -> tuple[int, str, int]:
    """Newest first, then node, then id descending: the merge order (smallest key first)."""
    try:
        rid = int(entry["id"])
    except (TypeError, ValueError):
        rid = 0
    return (-int(entry["timestamp"]), node, -rid)


def merge_pages(pages: Mapping[str, list[dict[str, Any]]], offset: int, limit: int) -> list[dict[str, Any]]:
    """Entries `offset .. offset+limit` of the merged order of every node's page, each tagged with its node."""
    runs = [[(_order_key(node, e), node, e) for e in entries] for node, entries in pages.items()]
    merged = heapq.merge(*runs, key=lambda item: item[0])
    out = []
    for i, (_, node, entry) in enumerate(merged):
        if i >= offset + limit:
            break
        if i >= offset:
            out.append({**entry, "node": node})
    return out


def locate_page(keys: Mapping[str, list[dict[str, Any]]], offset: int, limit: int) -> dict[str, tuple[int, int]]:
    """From every node's first offset+limit keys: {node: (its offset, its count)} of the entries that make
    up the merged page `offset .. offset+limit` (nodes with none left out)."""
    before: dict[str, int] = dict.fromkeys(keys, 0)
    inside: dict[str, int] = dict.fromkeys(keys, 0)
    for i, (_, node, _entry) in enumerate(heapq.merge(
            *[[(_order_key(node, e), node, e) for e in entries] for node, entries in keys.items()],
            key=lambda item: item[0])):
        if i >= offset + limit:
            break
        if i < offset:
            before[node] += 1
        else:
            inside[node] += 1
    return {node: (before[node], inside[node]) for node in keys if inside[node]}


def merge_sources(lists: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sources merged by name: counts summed, lastSeen latest, streams united; most entries first."""
    by_name: dict[str, dict[str, Any]] = {}
    for sources in lists:
        for s in sources:
            have = by_name.get(s["name"])
            if have is None:
                by_name[s["name"]] = {**s, "streams": sorted(set(s.get("streams") or []))} \
                    if "streams" in s else dict(s)
                continue
            have["count"] += s["count"]
            have["lastSeen"] = _latest(have.get("lastSeen"), s.get("lastSeen"))
            if "streams" in have:
                have["streams"] = sorted(set(have["streams"]) | set(s.get("streams") or []))
    return sorted(by_name.values(), key=lambda s: (-s["count"], s["name"]))


def merge_source(found: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """One source's details from every node that has it; None when none has."""
    result: dict[str, Any] | None = None
    sets: dict[tuple[str, str], dict[str, Any]] = {}
    for s in found:
        if result is None:
            result = {**s}
        else:
            result["count"] += s["count"]
            result["lastSeen"] = _latest(result.get("lastSeen"), s.get("lastSeen"))
            firsts = [v for v in (result.get("firstSeen"), s.get("firstSeen")) if v is not None]
            result["firstSeen"] = min(firsts) if firsts else None
            result["streams"] = sorted(set(result.get("streams") or []) | set(s.get("streams") or []))
        for ls in s.get("labelSets") or []:
            key = (orjson.dumps(ls["labels"], option=orjson.OPT_SORT_KEYS).decode(), ls["stream"])
            have = sets.get(key)
            if have is None:
                sets[key] = dict(ls)
            else:
                have["count"] += ls["count"]
                have["lastSeen"] = _latest(have.get("lastSeen"), ls.get("lastSeen"))
    if result is not None:
        result["labelSets"] = sorted(sets.values(), key=lambda ls: -ls["count"])[:100]
    return result


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class ClusterView:
    """The SearchBackend over this node's store and its peers, for one request.

    `missing` collects the nodes that did not answer, across every call made through this view.
    """

    local: SearchBackend
    node: str
    peers: list[Peer]
    client: PeerClient
    headers: dict[str, str]
    timeout: float
    concurrency: int
    missing: list[str] = field(default_factory=list)

    async def _get(self, peer: Peer, path: str, params: Mapping[str, str], sem: asyncio.Semaphore) -> Any:
        """The `data` of a peer's answer; None for a 404 NOT_FOUND. Raises PeerFailed."""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
        url = self.client.url(peer.address, f"{path}?{query}" if query else path)
        async with sem:
            try:
                session = await self.client.session()
                async with asyncio.timeout(self.timeout), session.get(url, headers=self.headers,
                                                                      allow_redirects=False) as resp:
                    body = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise PeerFailed(str(exc) or type(exc).__name__) from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise PeerFailed(f"answered {status} without JSON") from None
        if status == 404 and isinstance(doc, dict) and doc.get("code") == "NOT_FOUND":
            return None
        if status != 200 or not isinstance(doc, dict) or doc.get("success") is not True:
            error = doc.get("error") if isinstance(doc, dict) else None
            raise PeerFailed(f"answered {status}: {error}")
        return doc.get("data")

    async def _ask_all(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """{node: data} for every peer that answered; the others are added to `missing`."""
        return await self._ask({p.node: (path, params) for p in self.peers})

    async def _ask(self, requests: Mapping[str, tuple[str, Mapping[str, str]]]) -> dict[str, Any]:
        """{node: data} for the peers named in `requests` ({node: (path, params)}) that answered; the others
        are added to `missing`."""
        sem = asyncio.Semaphore(max(1, self.concurrency))
        peers = [p for p in self.peers if p.node in requests]
        results = await asyncio.gather(*(self._get(p, *requests[p.node], sem) for p in peers),
                                       return_exceptions=True)
        answers: dict[str, Any] = {}
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, PeerFailed):
                if peer.node not in self.missing:
                    self.missing.append(peer.node)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[peer.node] = result
        return answers

    async def search(self, f: Filters, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """One page of the merged order. A first page asks every node for its first `limit` entries; a deeper
        page first asks for the keys of the first offset+limit (small), then each node only for its part of
        the page, so a page costs about `limit` entries of transfer however deep it is."""
        window = offset + limit
        params = {**filter_params(f), "limit": str(window), "offset": "0"}
        if offset == 0:
            (total, local), remote = await asyncio.gather(self.local.search(f, window, 0),
                                                          self._ask_all("/api/logs/search", params))
            pages = {self.node: local}
            for node, data in remote.items():
                total += int(data["total"])
                pages[node] = data["logs"]
            return total, merge_pages(pages, offset, limit)
        (total, local), remote = await asyncio.gather(self.local.search(f, window, 0),
                                                      self._ask_all("/api/logs/search", {**params, KEYS_PARAM: "1"}))
        keys = {self.node: local}
        for node, data in remote.items():
            total += int(data["total"])
            keys[node] = data["logs"]
        parts = locate_page(keys, offset, limit)
        pages: dict[str, list[dict[str, Any]]] = {}
        if self.node in parts:
            start, count = parts[self.node]
            pages[self.node] = local[start:start + count]
        remote = await self._ask({node: ("/api/logs/search", {**filter_params(f), "offset": str(start),
                                                                "limit": str(count)})
                                  for node, (start, count) in parts.items() if node != self.node})
        pages.update((node, data["logs"]) for node, data in remote.items())
        return total, merge_pages(pages, 0, limit)

    async def count(self, f: Filters) -> int:
        params = {**filter_params(f), "limit": "1", "offset": "0"}
        total, remote = await asyncio.gather(self.local.count(f), self._ask_all("/api/logs/search", params))
        return total + sum(int(data["total"]) for data in remote.values())

    async def histogram(self, f: Filters, bucket_ms: int) -> tuple[list[dict[str, int]], int]:
        params = {**filter_params(f), "bucket": str(bucket_ms)}
        (buckets, total), remote = await asyncio.gather(self.local.histogram(f, bucket_ms),
                                                        self._ask_all("/api/logs/histogram", params))
        counts = {b["timestamp"]: b["count"] for b in buckets}
        for data in remote.values():
            total += int(data["total"])
            for b in data["buckets"]:
                if b["timestamp"] in counts:
                    counts[b["timestamp"]] += int(b["count"])
        return [{"timestamp": ts, "count": n} for ts, n in counts.items()], total

    async def sources(self, tenant: str) -> list[dict[str, Any]]:
        local, remote = await asyncio.gather(self.local.sources(tenant),
                                             self._ask_all("/api/containers", {"scope": "local"}))
        return merge_sources([local, *remote.values()])

    async def source(self, tenant: str, id_or_name: str) -> dict[str, Any] | None:
        path = "/api/containers/" + quote(id_or_name, safe="")
        local, remote = await asyncio.gather(self.local.source(tenant, id_or_name),
                                             self._ask_all(path, {"scope": "local"}))
        return merge_source(s for s in [local, *remote.values()] if s is not None)

    async def resolve_source_id(self, tenant: str, sid: str) -> str | None:
        for s in await self.sources(tenant):
            if s["id"] == sid:
                return s["name"]
        return None


@dataclass
class ClusterSearch:
    """Decides per request whether to answer for the cluster, and builds the view that does."""

    peers: PeersSource
    client: PeerClient
    timeout: float = 2.0
    concurrency: int = 8

    def view(self, local: SearchBackend, scope: str | None, headers: Mapping[str, str]) -> ClusterView | None:
        """A ClusterView, or None when this request is answered from the local store alone: `scope=local`,
        a request from a peer, or no other ACTIVE node."""
        if scope == "local" or PEER_HEADER.lower() in {k.lower() for k in headers}:
            return None
        node, peers = self.peers()
        if not peers:
            return None
        passed = {PEER_HEADER: "1"}
        for name in ("x-scope-orgid", "authorization"):
            value = next((v for k, v in headers.items() if k.lower() == name), None)
            if value is not None:
                passed[name] = value
        return ClusterView(local, node, peers, self.client, passed, self.timeout, self.concurrency)
