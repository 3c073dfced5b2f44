"""Configs that used to freeze or crash a node, PUT to a real node subprocess (embedded store).

Each test polls `/-/healthy` while the node handles the hostile config: the node must keep answering."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.node_process import NodeProcess, node_config
from tests.polling import wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow

CONFIG = "/agent/api/v1/config/"
CONFIGS = "/agent/api/v1/configs"
TARGETS = "/agent/api/v1/metrics/targets"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("hostile") / "node", node_config(store="embedded")).start()
    yield proc
    proc.stop()


def healthy_within(node: NodeProcess, seconds: float) -> float:
    """One /-/healthy round trip; fails unless answered 200 within `seconds`. Returns the latency."""
    started = time.monotonic()
    resp = node.request("GET", "/-/healthy", timeout=seconds)
    took = time.monotonic() - started
    assert resp.status == 200 and took < seconds, (resp.status, took)
    return took


def test_catastrophic_relabel_regex_does_not_freeze_the_node(node: NodeProcess) -> None:
    """Issue reproduction: `(a|a)*b` against 30 a's never returned with a backtracking matcher, and the
    node stopped answering. RE2 answers at once, and the relabeling result is Prometheus' (anchored)."""
    port = free_port()  # nothing listens: the targets stay down, their labels are what is checked
    body = (
        "scrape_configs:\n"
        "- job_name: redos\n"
        "  static_configs:\n"
        f"  - targets: ['127.0.0.1:{port}']\n"
        f"    labels: {{foo: {'a' * 30}}}\n"
        f"  - targets: ['127.0.0.2:{port}']\n"
        f"    labels: {{foo: {'a' * 30}b}}\n"
        "  relabel_configs:\n"
        "  - {source_labels: [foo], regex: '(a|a)*b', action: drop}\n"
    )
    resp = node.request("PUT", CONFIG + "redos", body)
    assert resp.status == 201, resp.text

    def running_targets() -> list[str]:
        healthy_within(node, 2.0)  # an AssertionError ends the wait at once
        targets = node.get(TARGETS, timeout=2).json()["data"]
        return sorted(t["endpoint"] for t in targets if t["instance"] == "redos")

    endpoints = wait_for(running_targets, 20, what="the config's targets")
    # the 30 a's do not match `^(?:(a|a)*b)$`: kept; the one ending in b matches: dropped
    assert endpoints == [f"http://127.0.0.1:{port}/metrics"]
    for _ in range(5):
        healthy_within(node, 1.0)


@pytest.mark.parametrize(("body", "fragment"), [
    (b"scrape_configs: " + b"[" * 500 + b"]" * 500 + b"\n", "exceeded max depth of 100"),
    (b"scrape_configs:\n" + b"".join(b"  " * i + b"-\n" for i in range(1, 500)), "exceeded max depth of 100"),
    (b"scrape_configs: []\nx\x00: 1\n", "control characters are not allowed"),
])
def test_deep_or_nul_yaml_is_400_without_traceback(node: NodeProcess, body: bytes, fragment: str) -> None:
    before = node.log().count("Traceback")
    resp = node.request("PUT", CONFIG + "deep", body)
    assert resp.status == 400, resp.text
    error = resp.json()["data"]["error"]
    assert error.startswith("could not unmarshal config: ") and fragment in error, error
    assert node.log().count("Traceback") == before
    healthy_within(node, 1.0)
