"""Entries and stores for the log search tests: `add_entries` is the one way tests put logs in a store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette

from service.logs.search.config import SearchConfig
from service.logs.search.store import LogStore
from tests.helpers.ports import free_port


@dataclass
class Entry:
    """What the logs instance hands the store (duck-typed)."""

    labels: dict[str, str]
    timestamp_ns: int
    line: str
    metadata: dict[str, str] = field(default_factory=dict)


def now_ms() -> int:
    return int(time.time() * 1000)


def entry(container: str, line: str, ts_ms: int, stream: str = "stdout", **labels: str) -> Entry:
    return Entry({"container": container, "stream": stream, **labels}, ts_ms * 1_000_000, line)


def add_entries(store: LogStore, entries: list[Entry], tenant: str = "") -> None:
    """Add through the store's ingest hook and wait until written."""
    store.add(entries, tenant)
    assert store.flush(30.0), "store did not write the entries in time"


def make_store(tmp_path, writer_nice: int = 0, **cfg) -> LogStore:
    """A store in tmp_path. Its writer is not niced (nodes nice it): a niced writer can be starved for a
    minute while the rest of the suite runs nodes beside it, and these tests are about what it does."""
    config = SearchConfig(**cfg)
    config.check()
    store = LogStore(config, str(tmp_path / "search"), writer_nice=writer_nice)
    store.open()
    return store


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def request(url: str, *, method: str = "GET", body: object = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) of one HTTP request; error statuses are returned, not raised."""
    import urllib.error
    import urllib.request

    import orjson

    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), dict(exc.headers)


def search_app(store: LogStore | None, **kwargs) -> Starlette:
    from service.logs.search.routes import search_routes

    return Starlette(routes=search_routes(store, **kwargs))
