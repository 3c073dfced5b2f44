"""Helpers for the whole-node end-to-end tests: node configs with remote_write, a node-exporter process,
a capture peer served from a thread (the tests themselves are synchronous), and /metrics readers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.peers import require
from tests.helpers.ports import free_port
from tests.helpers.processes import terminate
from tests.helpers.remote_helpers import CapturePeer, Reply

WRITE = "/agent/api/v1/metrics/instance/{}/write"
RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
FAST_QUEUE = "{batch_send_deadline: 100ms, min_backoff: 20ms, max_backoff: 200ms}"


def relay_config(wal_dir: Path, instance: str, remote_url: str, *, external_labels: dict[str, str] | None = None,
                 remote_extra: str = "", log_level: str = "info") -> str:
    """A node with one static metrics instance forwarding everything it receives to ``remote_url``."""
    labels = json.dumps(external_labels or {})
    return (
        f"server:\n  log_level: {log_level}\n"
        f"metrics:\n  wal_directory: {wal_dir}\n"
        f"  global:\n    scrape_interval: 15s\n    external_labels: {labels}\n"
        f"  configs:\n  - name: {instance}\n    remote_flush_deadline: 5s\n"
        f"    remote_write:\n    - url: {remote_url}\n      name: out\n"
        f"      queue_config: {FAST_QUEUE}\n"
        + "".join(f"      {line}\n" for line in remote_extra.splitlines() if line)
    )


def start_relay(base: Path, instance: str, remote_url: str, **kwargs: Any) -> NodeProcess:
    return NodeProcess(base, relay_config(base / "wal", instance, remote_url, **kwargs)).start()


def metric_values(text: str, name: str) -> list[tuple[str, float]]:
    """``(labels, value)`` of every sample of ``name`` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            out.append((head[len(name):], float(value)))
    return out


def metric_sum(node: NodeProcess, name: str) -> float:
    return sum(v for _, v in metric_values(node.get("/metrics").text, name))


class NodeExporter:
    """prometheus-node-exporter on a free loopback port, stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "node-exporter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeExporter:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([require(NODE_EXPORTER, "prometheus-node-exporter"),
                                          f"--web.listen-address=127.0.0.1:{self.port}",
                                          "--no-collector.systemd"], stdout=log, stderr=subprocess.STDOUT)
        from tests.helpers.node_process import request

        wait_for(lambda: request(self.port, "GET", "/metrics", timeout=2).status == 200, 15,
                 what="node-exporter")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        terminate(proc)


class ThreadedPeer:
    """A :class:`CapturePeer` on its own event loop in a thread; reads go through that loop."""

    def __init__(self, script: Callable[[int], Reply]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="capture-peer", daemon=True)
        self.peer = CapturePeer(script)

    def start(self) -> ThreadedPeer:
        self.thread.start()
        self.call(self.peer.start())
        return self

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def read(self, fn: Callable[[CapturePeer], Any]) -> Any:
        """``fn(peer)`` evaluated on the peer's loop, so it sees a consistent state."""
        async def run() -> Any:
            return fn(self.peer)

        return self.call(run())

    @property
    def url(self) -> str:
        return self.peer.url

    def stop(self) -> None:
        self.call(self.peer.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
