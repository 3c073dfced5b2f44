"""Configs that used to freeze or crash a node, PUT to a real node subprocess (embedded store).

Each test polls `/-/healthy` while the node handles the hostile config: the node must keep answering."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.node_process import NodeProcess, node_config
from tests.helpers.polling import wait_for
from tests.helpers.ports import free_port
from tests.helpers.rw_payloads import simple_series, write_body

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


def big_config(limit: int = 3_980_000) -> bytes:
    """A body just under the 4 MiB limit and under the 200,000-node YAML limit that costs seconds of CPU to
    parse, yet little to run: one target and ~18,000 identical no-op relabel rules."""
    head = ("scrape_configs:\n- job_name: big\n  static_configs:\n"
            f"  - targets: ['127.0.0.1:{free_port()}']\n  relabel_configs:\n")
    rule = "  - {source_labels: [nope], regex: 'n" + "x" * 170 + "', target_label: t, replacement: r}\n"
    return (head + rule * ((limit - len(head)) // len(rule))).encode()


@pytest.fixture()
def short_lease_node(tmp_path: Path) -> Iterator[NodeProcess]:
    text = node_config(store="embedded") + "    lifecycler:\n      heartbeat_period: 1s\n      lease_ttl: 3s\n"
    proc = NodeProcess(tmp_path / "node", text).start()
    yield proc
    proc.stop()


def test_big_put_is_parsed_off_the_event_loop(short_lease_node: NodeProcess) -> None:
    """A 3.98 MB body blocked the event loop for 10-20 s: /write and /-/healthy stalled and the lease
    (3 s here) expired. Now the PUT is validated in the validation process and the owner parses the stored
    config in a thread: both endpoints keep answering (within 5 s here, so that a loaded CI machine's own stalls
    do not count; the freeze was 10-20 s), and the lease holds."""
    node = short_lease_node
    assert node.request("PUT", CONFIG + "w", "scrape_configs: []\n").status == 201
    write = "/agent/api/v1/metrics/instance/w/write"
    body = write_body(simple_series(3))
    wait_for(lambda: node.request("POST", write, body).status == 204, 20, what="instance w to take writes")
    big = big_config()
    assert 3_900_000 < len(big) < 4 << 20

    result: dict[str, object] = {}
    putter = threading.Thread(target=lambda: result.update(resp=node.request("PUT", CONFIG + "big", big, timeout=120)))
    started = time.monotonic()
    putter.start()
    worst = 0.0
    # poll through the PUT and then through the owner's parse of the stored config
    while putter.is_alive() or time.monotonic() - started < 25:
        worst = max(worst, healthy_within(node, 5.0))
        t0 = time.monotonic()
        assert node.request("POST", write, body, timeout=5.0).status == 204
        worst = max(worst, time.monotonic() - t0)
        assert time.monotonic() - started < 150, "the PUT did not finish"
    putter.join()
    resp = result["resp"]
    assert resp.status == 201, resp.text  # type: ignore[attr-defined]
    wait_for(lambda: any(t["instance"] == "big" for t in node.get(TARGETS).json()["data"]), 120,
             what="the big config to run")  # parsed in a thread meanwhile
    assert "lease expired" not in node.log()
    print(f"worst /-/healthy or /write latency during the big PUT: {worst * 1000:.0f} ms")
