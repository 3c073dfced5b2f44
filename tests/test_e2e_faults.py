"""The node's remote_write against a faulty peer, end to end: data enters through `/write` of a node process
and leaves through its queue to a scriptable capture peer (503 for a while, 400, or slower than the timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.metrics.remote.queue import ISOLATE_SENDS
from tests.helpers.e2e_helpers import RW_HEADERS, WRITE, ThreadedPeer, metric_sum, start_relay
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.remote_helpers import CapturePeer, Reply, request_body

pytestmark = pytest.mark.slow

REQUESTS, SERIES = 30, 20
BASE_MS = 1_700_000_000_000


def post_all(node: NodeProcess) -> None:
    for r in range(REQUESTS):
        body = request_body(SERIES, BASE_MS + r * 1000, name="fault", value=float(r))
        resp = node.request("POST", WRITE.format("relay"), body, headers=RW_HEADERS)
        assert resp.status == 204, resp.text


def expected_timestamps() -> list[int]:
    return [BASE_MS + r * 1000 for r in range(REQUESTS)]


@pytest.fixture
def peer_and_gate() -> Iterator[tuple[ThreadedPeer, threading.Event, list[Reply]]]:
    """A peer answering ``faulty[0]`` until the gate is set, then 204."""
    gate = threading.Event()
    faulty = [Reply(503)]
    peer = ThreadedPeer(lambda n: Reply() if gate.is_set() else faulty[0]).start()
    try:
        yield peer, gate, faulty
    finally:
        peer.stop()


def delivered_in_order(peer: ThreadedPeer) -> bool:
    def check(p: CapturePeer) -> bool:
        want = expected_timestamps()
        return len(p.accepted) == SERIES and all(sorted(set(ts)) == want for ts in p.accepted.values())

    return bool(peer.read(check))


def test_503_then_204_nothing_lost_order_kept(tmp_path: Path, peer_and_gate) -> None:
    peer, gate, _ = peer_and_gate
    node = start_relay(tmp_path / "node", "relay", peer.url)
    try:
        post_all(node)
        wait_for(lambda: peer.read(lambda p: p.requests) >= 3, 10, what="three refused sends")
        assert peer.read(lambda p: p.samples()) == 0
        gate.set()
        wait_for(lambda: delivered_in_order(peer), 15, what="everything delivered after the outage")
        assert peer.read(lambda p: p.in_order() and p.duplicates == 0)
        assert metric_sum(node, "prometheus_remote_storage_samples_retried_total") >= 3 * 1  # ≥ 1 sample/retry
        assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
        wait_for(lambda: metric_sum(node, "prometheus_remote_storage_samples_total") == REQUESTS * SERIES, 5,
                 what="samples_total to count every sample once")
    finally:
        node.stop()
    # the queue's warnings carry its fields (component, instance, remote_name, error)
    line = next(ln for ln in node.log().splitlines() if "failed to send batch, retrying" in ln)
    assert "component=remote_write instance=relay remote_name=out" in line, line
    assert 'error="server returned HTTP status 503' in line, line


def test_400_drops_and_counts_failed(tmp_path: Path, peer_and_gate) -> None:
    peer, _, faulty = peer_and_gate
    faulty[0] = Reply(400)
    node = start_relay(tmp_path / "node", "relay", peer.url)
    try:
        post_all(node)
        wait_for(lambda: metric_sum(node, "prometheus_remote_storage_samples_failed_total") == REQUESTS * SERIES,
                 15, what="every sample counted as failed")
        assert peer.read(lambda p: p.samples()) == 0
        assert metric_sum(node, "prometheus_remote_storage_samples_total") == 0
        assert metric_sum(node, "prometheus_remote_storage_samples_retried_total") == 0
        # the queue moved past the refused data: new data after the peer recovers is sent, the old is not
        requests_so_far = peer.read(lambda p: p.requests)
        # not retried: a refused batch is split to isolate what is refused, within its bounded budget
        assert requests_so_far <= REQUESTS * (1 + ISOLATE_SENDS)
        assert node.get("/-/healthy").status == 200
    finally:
        node.stop()
    assert "non-recoverable error, dropping data" in node.log()


def test_slow_remote_times_out_and_is_retried(tmp_path: Path, peer_and_gate) -> None:
    peer, gate, faulty = peer_and_gate
    faulty[0] = Reply(204, delay=2.0)
    node = start_relay(tmp_path / "node", "relay", peer.url, remote_extra="remote_timeout: 300ms")
    try:
        post_all(node)
        wait_for(lambda: metric_sum(node, "prometheus_remote_storage_samples_retried_total") > 0, 10,
                 what="a timed-out send to be retried")
        wait_for(lambda: peer.read(lambda p: p.requests) >= 2, 10, what="a second (timed-out) attempt")
        gate.set()
        wait_for(lambda: delivered_in_order(peer), 15, what="everything delivered once the peer is fast")
        # a timed-out request the peer still stored makes duplicates (at-least-once), never reordering
        assert peer.read(lambda p: p.in_order())
        assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
    finally:
        node.stop()
    assert "TimeoutError" in node.log() or "Timeout" in node.log(), node.log()[-2000:]
