"""A stand-in Kubernetes API server for discovery tests.

No kube-apiserver runs on this machine (no Docker, nothing in apt or PyPI), so this serves the small part of
the API that service discovery uses, shaped as the real one answers:
- LIST: `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods` (and services, endpoints, nodes,
  discovery.k8s.io/v1 endpointslices, networking.k8s.io/v1 ingresses) answers `{"kind": "PodList",
  "apiVersion": "v1", "metadata": {"resourceVersion": ...}, "items": [...]}`, items without kind/apiVersion
  as `kubectl get -o json` shows them inside a list.
- WATCH (`?watch=true&resourceVersion=N`): a chunked stream of `{"type", "object"}` lines, replaying every
  event after N, then live ones; BOOKMARK events when `allowWatchBookmarks=true`; an ERROR event with a 410
  Status when N is older than the last compaction; the stream ends after `timeoutSeconds`.
- LIST at a `resourceVersion` older than the last compaction answers 410 Expired ("0" and "" never do).
- `labelSelector` (=, ==, !=, in, notin, exists, !key) and `fieldSelector` (=, ==, != on dotted paths) filter
  both; an object modified out of a watch's selector is sent as DELETED, into it as ADDED.
- `/version`.

Tests change objects while it runs (`apply`, `delete`), force a compaction (`compact`), cut every open watch
(`drop_watches`) or take the whole server down and up (`stop`, `start` on the same port). It runs on its own
event loop in a thread and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ssl
import threading
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

Obj = dict[str, Any]
# resource -> (apiVersion, kind)
RESOURCES = {
    "pods": ("v1", "Pod"), "services": ("v1", "Service"), "endpoints": ("v1", "Endpoints"),
    "nodes": ("v1", "Node"), "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
    "ingresses": ("networking.k8s.io/v1", "Ingress"),
}
KIND_TO_RESOURCE = {kind: res for res, (_, kind) in RESOURCES.items()}


def _get_path(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _split_outside_parens(text: str) -> list[str]:
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [t.strip() for t in out if t.strip()]


def label_match(selector: str, labels: dict[str, str]) -> bool:
    for term in _split_outside_parens(selector):
        if " notin " in term or " in " in term:
            neg = " notin " in term
            key, values = term.split(" notin " if neg else " in ", 1)
            vals = {v.strip() for v in values.strip()[1:-1].split(",")}
            present = key.strip() in labels and labels[key.strip()] in vals
            if present == neg:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(selector: str, obj: Obj) -> bool:
    for term in [t for t in selector.split(",") if t]:
        if "!=" in term:
            path, value = term.split("!=", 1)
            if _get_path(obj, path) == value:
                return False
        else:
            path, value = term.replace("==", "=").split("=", 1)
            if _get_path(obj, path) != value:
                return False
    return True


class FakeAPIServer:
    def __init__(self, port: int, bookmark_interval: float = 1.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.bookmark_interval = bookmark_interval
        self.objects: dict[str, dict[str, Obj]] = {r: {} for r in RESOURCES}
        self.events: dict[str, list[tuple[int, str, Obj | None, Obj]]] = {r: [] for r in RESOURCES}
        self.rv = 100
        self.compacted = 0
        self.requests: Counter[str] = Counter()  # "list pods", "watch pods", ...
        self.authorizations: Counter[str] = Counter()  # Authorization headers seen
        self.list_versions: list[str] = []  # resourceVersion of each LIST
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Event | None = None
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------- test-side control

    def start(self) -> FakeAPIServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-kube-apiserver")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stand-in API server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def apply(self, obj: Obj) -> Obj:
        """Create or replace an object (given as `kubectl get -o json` shows it); returns the stored copy."""
        obj = copy.deepcopy(obj)
        resource = KIND_TO_RESOURCE[obj["kind"]]
        with self._lock:
            self.rv += 1
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("uid", f"uid-{resource}-{meta.get('namespace', '')}-{meta['name']}")
            key = self._key(obj)
            old = self.objects[resource].get(key)
            self.objects[resource][key] = obj
            self.events[resource].append((self.rv, "MODIFIED" if old else "ADDED", old, obj))
        self._notify()
        return obj

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        resource = KIND_TO_RESOURCE[kind]
        key = f"{namespace}/{name}" if namespace else name
        with self._lock:
            old = self.objects[resource].pop(key)
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self.events[resource].append((self.rv, "DELETED", old, gone))
        self._notify()

    def compact(self) -> None:
        """Forget history: a watch from any earlier resourceVersion now gets 410 Gone."""
        with self._lock:
            self.rv += 1
            self.compacted = self.rv
            for log in self.events.values():
                log.clear()

    def drop_watches(self) -> None:
        """Cut every open watch connection, as a load balancer or an API server restart would."""
        loop = self._loop
        if loop is not None:
            for task in list(self._watch_tasks):
                loop.call_soon_threadsafe(task.cancel)

    # ------------------------------------------------------------------------------------------ serving

    @staticmethod
    def _key(obj: Obj) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    def _notify(self) -> None:
        loop, cond = self._loop, self._changed
        if loop is not None and cond is not None:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        """Wake every watch: set the current event and put a fresh one in its place."""
        event, self._changed = self._changed, asyncio.Event()
        if event is not None:
            event.set()

    async def _serve(self) -> None:
        self._changed = asyncio.Event()
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_apply", self._apply_request)
        for resource, (api_version, _) in RESOURCES.items():
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            app.router.add_get(f"{base}/{resource}", self._handler(resource))
            app.router.add_get(f"{base}/namespaces/{{ns}}/{resource}", self._handler(resource))
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()

    async def _shutdown(self) -> None:
        for task in list(self._watch_tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stats(self, request: web.Request) -> web.Response:
        """Request counts (stand-in only: lets a benchmark in another process read them)."""
        return web.json_response(dict(self.requests))

    async def _apply_request(self, request: web.Request) -> web.Response:
        """`apply` over HTTP (stand-in only), for a benchmark driving the server from another process."""
        obj = orjson.loads(await request.read())
        await asyncio.to_thread(self.apply, obj)
        return web.json_response({"applied": obj["metadata"]["name"]})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "26", "gitVersion": "v1.26.0"})

    def _handler(self, resource: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            ns = request.match_info.get("ns", "")
            self.authorizations[request.headers.get("Authorization", "")] += 1
            q = request.query
            if q.get("watch") in ("true", "1"):
                self.requests[f"watch {resource}"] += 1
                return await self._watch(request, resource, ns)
            self.requests[f"list {resource}"] += 1
            rv = q.get("resourceVersion", "")
            self.list_versions.append(rv)
            if rv not in ("", "0") and int(rv) < self.compacted:
                return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                          "message": f"too old resource version: {rv} ({self.compacted})",
                                          "reason": "Expired", "code": 410}, status=410)
            return self._list(resource, ns, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        return handle

    def _matches(self, obj: Obj | None, ns: str, label_sel: str, field_sel: str) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if ns and meta.get("namespace") != ns:
            return False
        return label_match(label_sel, meta.get("labels") or {}) and field_match(field_sel, obj)

    @staticmethod
    def _bare(obj: Obj) -> Obj:
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}

    def _list(self, resource: str, ns: str, label_sel: str, field_sel: str) -> web.Response:
        api_version, kind = RESOURCES[resource]
        with self._lock:
            items = [self._bare(o) for o in self.objects[resource].values()
                     if self._matches(o, ns, label_sel, field_sel)]
            rv = self.rv
        body = {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": str(rv)},
                "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, resource: str, ns: str) -> web.StreamResponse:
        q = request.query
        label_sel, field_sel = q.get("labelSelector", ""), q.get("fieldSelector", "")
        bookmarks = q.get("allowWatchBookmarks") == "true"
        timeout = float(q.get("timeoutSeconds") or 1800)
        since = int(q.get("resourceVersion") or 0)
        api_version, kind = RESOURCES[resource]
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
        except ConnectionResetError:  # the client went away before the stream started
            return resp
        task = asyncio.current_task()
        assert task is not None and self._changed is not None
        self._watch_tasks.add(task)

        async def send(kind_: str, obj: Obj) -> None:
            await resp.write(orjson.dumps({"type": kind_, "object": obj}) + b"\n")

        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_bookmark = loop.time()
            while loop.time() < deadline:
                if since and since < self.compacted:  # history it needs is gone (also for a live watch)
                    await send("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                         "message": f"too old resource version: {since} ({self.compacted})",
                                         "reason": "Expired", "code": 410})
                    return resp
                with self._lock:
                    pending = [e for e in self.events[resource] if e[0] > since]
                    current = self.rv
                for rv, etype, old, new in pending:
                    was, now = self._matches(old, ns, label_sel, field_sel), self._matches(new, ns, label_sel,
                                                                                          field_sel)
                    if etype == "DELETED":
                        if was:
                            await send("DELETED", new)
                    elif now:
                        await send("ADDED" if etype == "ADDED" or not was else "MODIFIED", new)
                    elif was:
                        await send("DELETED", new)
                    since = rv
                since = max(since, current) if not pending else since
                if bookmarks and loop.time() - last_bookmark >= self.bookmark_interval:
                    await send("BOOKMARK", {"kind": kind, "apiVersion": api_version,
                                            "metadata": {"resourceVersion": str(since)}})
                    last_bookmark = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(self.bookmark_interval, 0.5))
            return resp
        except ConnectionResetError:  # the client went away
            return resp
        finally:
            self._watch_tasks.discard(task)
