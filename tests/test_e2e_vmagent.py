"""Whole node behind a real vmagent 1.79 (Debian's victoria-metrics), the other sender our docs name.

vmagent scrapes a node-exporter and itself every second and remote_writes the same samples to two places:
our node's instance ``relay`` (which forwards to a Prometheus receiver with ``cluster="e2e"`` added), and
straight to a second Prometheus receiver. vmagent keeps no queryable storage of its own, so that second
receiver holds its raw samples, the truth: over a closed time window the receiver behind our node must hold
exactly the same series (plus ``cluster``) with exactly the same samples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.e2e_helpers import WRITE, NodeExporter, metric_sum, metric_values, start_relay
from tests.helpers.node_process import wait_for
from tests.helpers.prometheus_server import PrometheusServer, describe_diff, raw_samples
from tests.helpers.vmagent_process import VMAgent

pytestmark = pytest.mark.slow


def test_vmagent_to_node_to_prometheus(tmp_path: Path) -> None:
    behind = PrometheusServer(tmp_path, receiver=True).start()
    direct = PrometheusServer(tmp_path, receiver=True).start()
    exporter = NodeExporter(tmp_path).start()
    node = vmagent = None
    try:
        node = start_relay(tmp_path / "node", "relay", behind.write_url, external_labels={"cluster": "e2e"})
        node_url = f"http://127.0.0.1:{node.port}{WRITE.format('relay')}"
        vmagent = VMAgent(tmp_path, [
            {"job_name": "node", "scrape_interval": "1s",
             "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]},
        ], [node_url, direct.write_url])
        vmagent.scrape_configs.append({"job_name": "vmagent", "scrape_interval": "1s",
                                       "static_configs": [{"targets": [f"127.0.0.1:{vmagent.port}"]}]})
        vmagent.start()
        started = time.time()

        window = 6
        wait_for(lambda: time.time() > started + 3 + window + 1, 20, what="the window to close")
        at = started + 3 + window
        state: dict[str, Any] = {}

        def settled() -> bool:  # vmagent's own queue to `direct` may lag a flush interval or two
            want = raw_samples(direct, at, window)
            got = raw_samples(behind, at, window, drop="cluster")
            state.update(want=want, got=got)
            return len(want) > 500 and got == want

        try:
            wait_for(settled, 30, interval=0.5, what="the receiver behind the node to hold vmagent's samples")
        except AssertionError:
            raise AssertionError(describe_diff(state.get("want", {}), state.get("got", {}))) from None
        want = state["want"]
        assert {dict(k).get("job") for k in want} == {"node", "vmagent"}
        ups = {dict(k)["job"]: len(v) for k, v in want.items() if dict(k)["__name__"] == "up"}
        assert ups.keys() == {"node", "vmagent"} and min(ups.values()) >= 3, ups  # several scrapes each

        labelled = raw_samples(behind, at, window)
        assert len(labelled) == len(want) and all(dict(k).get("cluster") == "e2e" for k in labelled)

        # our node (vmagent's first URL) answered vmagent only 2xx, and vmagent dropped and retried nothing
        vm_metrics = vmagent.metrics()
        requests = metric_values(vm_metrics, "vmagent_remotewrite_requests_total")
        ours = [(labels, v) for labels, v in requests if 'url="1:' in labels]
        assert any(v > 0 for _, v in ours) and all('status_code="2XX"' in labels for labels, v in ours if v), requests
        assert sum(v for _, v in metric_values(vm_metrics, "vmagent_remotewrite_packets_dropped_total")) == 0
        assert sum(v for labels, v in metric_values(vm_metrics, "vmagent_remotewrite_retries_count_total")
                   if 'url="1:' in labels) == 0
        assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
        assert metric_sum(node, "agent_remote_write_receiver_samples_total") > 0
    finally:
        if vmagent is not None:
            vmagent.stop()
        if node is not None:
            node.stop()
        exporter.stop()
        direct.stop()
        behind.stop()
    assert "level=error" not in node.log(), node.log()[-3000:]
