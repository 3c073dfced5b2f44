"""Many loopback scrape targets from one small HTTP server, for the per-target sharding tests and bench.

Every path `/t/<i>` is one target; the server logs the arrival time of every request by path and which
process sent it (its connection's socket found in /proc among the processes in `scrapers`), so a test
counts at the targets how often, and by which node, each one was scraped. It runs aiohttp on its own
thread and loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict

from aiohttp import web


class ManyTargets:
    def __init__(self, count: int, series: int = 3, *, identify: bool = True) -> None:
        self.count = count
        self.identify = identify  # name the scraper of each request (off for benchmarks: /proc scans)
        self.body = b"".join(b'sharded_metric{n="%d"} %d\n' % (i, i) for i in range(series))
        self.port = 0
        self._requests: dict[str, list[tuple[float, int]]] = defaultdict(list)  # (time, peer port)
        self._stopping = threading.Event()
        self.scrapers: dict[int, str] = {}  # pid → name of the processes that scrape (the nodes)
        self._by_port: dict[int, str] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def paths(self) -> list[str]:
        return [f"/t/{i}" for i in range(self.count)]

    def static_configs(self) -> str:
        """YAML `static_configs` entries: one group per path, its own `instance` label."""
        return "".join(f"      - targets: ['127.0.0.1:{self.port}']\n"
                       f"        labels: {{__metrics_path__: '{path}', instance: 't{i}'}}\n"
                       for i, path in enumerate(self.paths))

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.time()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self._requests[request.path].append((now, peer[1] if peer else 0))
        return web.Response(body=self.body, content_type="text/plain")

    def _resolver(self) -> None:
        """Names the scraper of every connection seen, in batches off the server's loop, while the
        connections are open (the nodes keep them alive between scrapes)."""
        while not self._stopping.wait(0.1):
            with self._lock:
                ports = {port for times in self._requests.values() for _, port in times[-3:]}
            unknown = ports - self._by_port.keys()
            if unknown:
                self._by_port.update(self._resolve(unknown))

    def _resolve(self, ports: set[int]) -> dict[int, str]:
        by_inode: dict[str, int] = {}
        with open("/proc/net/tcp") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
                if local in ports and remote == self.port:
                    by_inode[f"socket:[{fields[9]}]"] = local
        out: dict[int, str] = {}
        for pid, name in list(self.scrapers.items()):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    port = by_inode.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    continue
                if port is not None:
                    out[port] = name
        return out

    def start(self) -> ManyTargets:
        ready = threading.Event()

        async def setup() -> None:
            app = web.Application()
            app.router.add_get("/t/{i}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(setup())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="many-targets", daemon=True)
        self._thread.start()
        if self.identify:
            threading.Thread(target=self._resolver, name="many-targets-who", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("target server did not start")
        return self

    def stop(self) -> None:
        self._stopping.set()
        loop = self._loop
        if loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def requests(self, start: float = 0.0, end: float = float("inf")) -> dict[str, list[tuple[float, str]]]:
        """(arrival time, scraper) by path within [start, end)."""
        with self._lock:
            items = {p: list(times) for p, times in self._requests.items()}
        who = self._by_port
        return {p: [(t, who.get(port, "?")) for t, port in times if start <= t < end] for p, times in items.items()}

    def total(self) -> int:
        with self._lock:
            return sum(len(times) for times in self._requests.values())
