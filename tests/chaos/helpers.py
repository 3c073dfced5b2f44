"""Helpers for the chaos tests: a node that relays metrics and logs to real peers, and load generators that
log what the node acknowledged, so counts can be compared with what arrived downstream."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.e2e_helpers import RW_HEADERS, WRITE, relay_config
from tests.helpers.logs_node import logs_section
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.rw_sender import body_for

SOAK = os.environ.get("CHAOS_SOAK", "") not in ("", "0")
"""Long mode (CHAOS_SOAK=1, or pytest --soak): a 10-minute outage instead of 20 s. Out of CI."""


def logs_config(positions: Path, loki_url: str) -> str:
    """The `logs:` block of a chaos node: instance `default`, search on, forwarding to `loki_url`."""
    return logs_section(loki_url=loki_url, max_period="500ms", search="{retention: 30d}", positions=positions)


def relay_node(base: Path, remote_url: str, loki: LokiCapture, *, wal_dir: Path | None = None,
               extra_server: str = "") -> NodeProcess:
    """A node with a static metrics instance `relay` (remote_write to `remote_url`) and a logs instance
    `default` (search on, forwarding to `loki`). Everything it stores lives under `wal_dir`."""
    wal = wal_dir or base / "wal"
    text = relay_config(wal, "relay", remote_url) + logs_config(wal / "positions", loki.url)
    if extra_server:
        text = text.replace("server:\n", "server:\n" + extra_server, 1)
    return NodeProcess(base, text)


@dataclass
class Load:
    """Threads posting distinct requests as fast as answered; `acked` holds what was answered 2xx."""

    port: int
    make: Callable[[int], tuple[str, bytes, dict[str, str], object]]
    threads: int = 4
    pause: float = 0.0
    acked: list[object] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count of non-2xx answers
    errors: int = 0
    stop_on_error: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            with self._lock:
                k = next(self._counter)
            path, body, headers, item = self.make(k)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except OSError:
                with self._lock:
                    self.errors += 1
                conn.close()
                if self.stop_on_error:
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                if 200 <= resp.status < 300:
                    self.acked.append(item)
                else:
                    self.refused[resp.status] = self.refused.get(resp.status, 0) + 1
            if self.pause:
                time.sleep(self.pause)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def answered(self) -> int:
        """Requests answered, with any status."""
        with self._lock:
            return len(self.acked) + sum(self.refused.values())

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(15)


def metrics_load(port: int, base_ms: int, **kwargs: object) -> Load:
    """remote_write requests as tests/helpers/rw_sender.py sends them; an acked item is (request number, samples)."""
    def make(k: int) -> tuple[str, bytes, dict[str, str], object]:
        body, n = body_for(k, base_ms)
        return WRITE.format("relay"), body, RW_HEADERS, (k, n)

    return Load(port, make, **kwargs)  # type: ignore[arg-type]


def logs_load(port: int, run: str, lines_per_push: int = 20, **kwargs: object) -> Load:
    """JSON Loki pushes; push k carries lines `<run> k-i`; an acked item is the tuple of its lines."""
    def make(k: int) -> tuple[str, bytes, dict[str, str], object]:
        now = time.time_ns()
        lines = tuple(f"{run} {k}-{i}" for i in range(lines_per_push))
        doc = {"streams": [{"stream": {"job": "chaos", "container": run},
                            "values": [[str(now + i), line] for i, line in enumerate(lines)]}]}
        return "/loki/api/v1/push", json.dumps(doc).encode(), {"Content-Type": "application/json"}, lines

    return Load(port, make, **kwargs)  # type: ignore[arg-type]


def acked_lines(load: Load) -> set[str]:
    return {line for item in load.acked for line in item}  # type: ignore[attr-defined]


def lines_at(loki: LokiCapture, run: str) -> list[str]:
    with loki.capture.lock:
        return [e.line for e in loki.capture.entries if e.line.startswith(run + " ")]


def held_per_request(prom: PrometheusServer) -> dict[int, int]:
    result = prom.query("count by (req) (last_over_time(durable[2h]))")
    return {int(r["metric"]["req"]): int(r["value"][1]) for r in result}


def missing_metrics(load: Load, prom: PrometheusServer) -> dict[int, tuple[int, int | None]]:
    held = held_per_request(prom)
    return {k: (n, held.get(k)) for k, n in load.acked if held.get(k) != n}  # type: ignore[misc]


def search_total(node: NodeProcess, word: str) -> int:
    resp = node.get(f"/api/logs/search?query={word}&limit=1&fromTimestamp=0&scope=local", timeout=10)
    return int(resp.json()["data"]["total"]) if resp.status == 200 else -1
