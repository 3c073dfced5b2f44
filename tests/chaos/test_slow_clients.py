"""Slow clients: hundreds of connections that trickle their headers, trickle a body, or never read the
answer. Meanwhile ordinary clients are served promptly, writes are acknowledged and all arrive at a real
Prometheus; the node closes connections that never finish their headers (a header read timeout).
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.chaos.helpers import metrics_load, missing_metrics, relay_node
from tests.helpers.e2e_helpers import WRITE
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import wait_for
from tests.helpers.prometheus_server import PrometheusServer, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="prometheus is not installed")]
SLOW_HEADERS, SLOW_BODIES, NON_READERS = 200, 50, 20
TRICKLE_FOR = 12.0  # seconds of trickling; a header read timeout must close the header tricklers by then


def connect(port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(True)
    sock.sendall(first)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the node answered or closed this connection (a 408/400 answer counts as closing it)."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) is not None  # b"" (closed) or an answer
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_slow_clients_do_not_starve_ordinary_ones(tmp_path: Path) -> None:
    with PrometheusServer(tmp_path, receiver=True) as prom, LokiCapture() as loki:
        node = relay_node(tmp_path / "node", prom.write_url, loki).start()
        path = WRITE.format("relay")
        slow: list[socket.socket] = []
        bodies: list[socket.socket] = []
        readers: list[socket.socket] = []
        load = metrics_load(node.port, int(time.time() * 1000) - 60_000, threads=2, pause=0.01,
                            stop_on_error=False)
        probes: list[float] = []
        try:
            slow += [connect(node.port, f"POST {path} HTTP/1.1\r\nHost: a\r\n".encode())
                     for _ in range(SLOW_HEADERS)]
            bodies += [connect(node.port, f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
                              .encode()) for _ in range(SLOW_BODIES)]
            readers += [connect(node.port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n" * 20)
                       for _ in range(NON_READERS)]
            load.start()
            started = time.monotonic()
            while time.monotonic() - started < TRICKLE_FOR:
                for n, sock in enumerate(slow + bodies):
                    with contextlib.suppress(OSError):  # closed by the node: what a header timeout does
                        sock.send(f"X-{n}: {uuid.uuid4().hex[:4]}\r\n".encode() if n < len(slow) else b"a")
                t0 = time.monotonic()
                assert node.get("/-/healthy", timeout=10).status == 200
                probes.append(time.monotonic() - t0)
                mark = load.count()
                wait_for(lambda m=mark: load.count() >= m + 20, 10, interval=0.05,
                         what="ordinary writes acknowledged among the slow clients")
            closed = sum(closed_by_server(s) for s in slow)
        finally:
            load.stop()
            for sock in slow + bodies + readers:
                sock.close()
        try:
            assert load.errors == 0 and not load.refused, (load.errors, load.refused)
            wait_for(lambda: not missing_metrics(load, prom), 60, interval=0.5,
                     what="every acknowledged sample at Prometheus")
            probes.sort()
            print(f"\nCHAOS slow clients: {SLOW_HEADERS} header tricklers, {SLOW_BODIES} body tricklers, "
                  f"{NON_READERS} non-readers for {TRICKLE_FOR:.0f} s; {len(load.acked)} ordinary writes "
                  f"acknowledged and delivered; /-/healthy p50 {probes[len(probes) // 2] * 1000:.0f} ms, "
                  f"max {probes[-1] * 1000:.0f} ms; {closed} of {SLOW_HEADERS} header tricklers closed by the node")
            assert probes[-1] < 3.0, f"/-/healthy took {probes[-1]:.1f} s among slow clients"
        finally:
            node.stop()
    assert closed == SLOW_HEADERS, f"header read timeout: {closed} of {SLOW_HEADERS} trickling connections closed"
