"""A shared informer: one LIST + WATCH of one resource (namespace, label and field selector) on one API
server, keeping every object once in `store`, and telling its handlers about each add, update and delete.

It behaves as client-go's reflector does:
- LIST, then WATCH from the list's resourceVersion with `allowWatchBookmarks`; bookmarks only move the
  resourceVersion on.
- A watch that ends or breaks resumes from the last resourceVersion seen.
- 410 Gone (as the answer or as an ERROR event) means that version is too old: LIST again, and tell the
  handlers what changed between the old store and the new list (client-go's Replace).
- While the API server cannot be reached, retry with exponential backoff and jitter (0.8 s doubling to
  30 s, as client-go's default), reset once a LIST succeeds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from service.log import get_logger
from service.metrics.discovery.kubernetes.client import APIClient, APIError
from service.metrics.discovery.kubernetes.metrics import EVENTS, INFORMERS, REQUESTS
from service.tasks import cancel_and_wait

Obj = dict[str, Any]
# handler(kind, key, obj): kind is "add", "update" or "delete"; obj is the stored (or last known) object.
Handler = Callable[[str, str, Obj], None]

BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
WATCH_TIMEOUT_MIN = 300  # seconds; each watch asks for a random timeout in [min, 2*min), as client-go does


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def _slim(obj: Obj) -> Obj:
    """Drop `metadata.managedFields`: often the largest part of an object, and no label is built from it."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class Informer:
    """LIST + WATCH of one resource; see the module docstring. start()/stop() own its task."""

    def __init__(self, client: APIClient, path: str, label_selector: str, field_selector: str,
                 role: str = "") -> None:
        self.client = client
        self.path = path
        self.role = role  # Prometheus' role name for the events metric
        self.params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        self.store: dict[str, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.lists = 0
        self.watches = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger("discovery", mechanism="kubernetes", path=path)

    def start(self) -> None:
        if self._task is None:
            INFORMERS.inc()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kubernetes informer {self.path}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            INFORMERS.dec()
        await cancel_and_wait(task)

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def remove_handler(self, handler: Handler) -> None:
        if handler in self.handlers:
            self.handlers.remove(handler)

    def _emit(self, kind: str, key: str, obj: Obj) -> None:
        if self.role:
            EVENTS.labels(self.role, kind).inc()
        for handler in list(self.handlers):
            handler(kind, key, obj)

    def _replace(self, items: list[Obj]) -> None:
        fresh = {object_key(o): o for o in items}
        old = self.store
        self.store = fresh
        for key, obj in old.items():
            if key not in fresh:
                self._emit("delete", key, obj)
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._emit("add", key, obj)
            elif prev != obj:
                self._emit("update", key, obj)

    async def _list(self) -> None:
        # As client-go: list at the version already seen ("0" at first), which the API server answers from
        # its watch cache instead of a quorum read of etcd; only when that version is gone, list at "".
        params = {**self.params, "resourceVersion": self.resource_version or "0"}
        try:
            try:
                page = await self.client.list(self.path, params)
            except APIError as exc:
                if exc.status != 410:
                    raise
                page = await self.client.list(self.path, {**self.params, "resourceVersion": ""})
        except Exception:
            REQUESTS.labels("list", "error").inc()
            raise
        REQUESTS.labels("list", "ok").inc()
        self.lists += 1
        self.resource_version = str((page.get("metadata") or {}).get("resourceVersion", ""))
        self._replace([_slim(o) for o in page.get("items") or []])
        self.synced.set()

    async def _watch(self) -> None:
        """Follow one watch request; returns when the server ends it, raises on 410 or a broken stream."""
        self.watches += 1
        timeout = random.randint(WATCH_TIMEOUT_MIN, 2 * WATCH_TIMEOUT_MIN - 1)
        params = {**self.params, "resourceVersion": self.resource_version}
        async for event in self.client.watch(self.path, params, timeout):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                raise APIError(code or 500, str(obj.get("message", "watch error")))
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            if kind == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            key = object_key(obj)
            obj = _slim(obj)
            if kind in ("ADDED", "MODIFIED"):
                prev = self.store.get(key)
                self.store[key] = obj
                self._emit("add" if prev is None else "update", key, obj)
            elif kind == "DELETED":
                prev = self.store.pop(key, None)
                self._emit("delete", key, prev if prev is not None else obj)
            if rv:
                self.resource_version = rv

    async def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    backoff = BACKOFF_INITIAL
                started = time.monotonic()
                await self._watch()
                REQUESTS.labels("watch", "ok").inc()
                self.last_error = ""
                if time.monotonic() - started > 1.0:
                    continue  # the server closed the watch (its timeout): resume from the last version at once
                self.log.warning("very short watch; backing off")
            except asyncio.CancelledError:
                raise
            except APIError as exc:
                self.last_error = str(exc)
                if not need_list:
                    REQUESTS.labels("watch", "gone" if exc.status == 410 else "error").inc()
                if exc.status == 410:
                    self.log.info("resourceVersion too old; listing again", err=self.last_error)
                    need_list = True
                    continue
                self.log.warning("kubernetes API request failed", err=self.last_error)
            except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError, ValueError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if not need_list:
                    REQUESTS.labels("watch", "error").inc()
                self.log.warning("kubernetes API unreachable", err=self.last_error)
            # Jittered backoff: a fleet of nodes does not hammer a recovering API server in step.
            await asyncio.sleep(backoff * (1.0 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX)
