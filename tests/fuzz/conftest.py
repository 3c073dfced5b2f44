"""One live node for the fuzz tests, with real peers behind it so what arrives downstream can be counted.

The node runs the scraping service on the embedded KV store (config and ring APIs), a metrics instance
`fuzzrw` (put through the config API) that remote_writes to a real Prometheus receiver, and a logs
instance `default` with log search that forwards to tests/helpers/loki_capture.py (a stand-in: no Loki runs here).
Tests share it (per xdist worker) and tell their data apart by a label or line prefix of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.e2e_helpers import FAST_QUEUE
from tests.helpers.logs_node import logs_section
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, node_config, wait_for
from tests.helpers.prometheus_server import PrometheusServer, available

RW_INSTANCE = "fuzzrw"


def logs_config(loki_url: str) -> str:
    """The `logs:` block of the fuzz node: instance `default`, search on, forwarding to `loki_url`."""
    return logs_section(loki_url=loki_url, search="{retention: 30d}")


@dataclass
class FuzzEnv:
    node: NodeProcess
    prom: PrometheusServer
    loki: LokiCapture
    config_file: Path
    config_text: str


def rw_config(url: str) -> str:
    return f"remote_write:\n- url: {url}\n  name: out\n  queue_config: {FAST_QUEUE}\n"


@pytest.fixture(scope="session")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    if not available():
        pytest.skip("prometheus is not installed")
    base = tmp_path_factory.mktemp("fuzz")
    with PrometheusServer(base, receiver=True) as prom, LokiCapture() as loki:
        text = node_config() + logs_config(loki.url)
        node = NodeProcess(base / "node", text).start()
        try:
            resp = node.request("PUT", f"/agent/api/v1/config/{RW_INSTANCE}", rw_config(prom.write_url))
            assert resp.status == 201, resp.text
            wait_for(lambda: RW_INSTANCE in node.get("/agent/api/v1/metrics/instances").json()["data"], 30,
                     what="the remote_write instance to run")
            yield FuzzEnv(node, prom, loki, node.config_path, text)
        finally:
            node.stop()
