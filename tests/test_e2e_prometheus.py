"""Whole node between two real Prometheus 2.42 servers: a scraping sender and a remote write receiver.

The sender scrapes itself and a node-exporter every second and remote_writes into our node's instance
``relay``; the instance forwards to the receiver with the global external label ``cluster="e2e"``. The
sender stores what it scrapes, so over a closed time window its raw samples are the truth: the receiver must
hold exactly the same series (plus ``cluster``) with exactly the same samples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.e2e_helpers import WRITE, NodeExporter, metric_sum, start_relay
from tests.helpers.node_process import wait_for
from tests.helpers.ports import free_port
from tests.helpers.prometheus_server import PrometheusServer, describe_diff, raw_samples

pytestmark = pytest.mark.slow

def test_prometheus_to_node_to_prometheus(tmp_path: Path) -> None:
    receiver = PrometheusServer(tmp_path, receiver=True).start()
    exporter = NodeExporter(tmp_path).start()
    node = None
    sender = None
    try:
        node = start_relay(tmp_path / "node", "relay", receiver.write_url, external_labels={"cluster": "e2e"})
        sender_port = free_port()
        sender = PrometheusServer(tmp_path, receiver=False, config=f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{sender_port}']}}]
  - job_name: node
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
remote_write:
  - url: http://127.0.0.1:{node.port}{WRITE.format('relay')}
    queue_config: {{batch_send_deadline: 500ms, max_samples_per_send: 2000}}
    metadata_config: {{send: true, send_interval: 2s}}
""")
        sender.port, sender.url = sender_port, f"http://127.0.0.1:{sender_port}"
        sender.start()
        started = time.time()

        # a closed window, well after the start, in the past once it is compared
        window = 6
        wait_for(lambda: time.time() > started + 3 + window + 1, 20, what="the window to close")
        at = started + 3 + window

        want = raw_samples(sender, at, window)
        assert len(want) > 500, f"the sender scraped only {len(want)} series"
        assert any(dict(k).get("job") == "node" for k in want) and any(dict(k).get("job") == "prometheus"
                                                                           for k in want)
        state: dict[str, Any] = {}

        def same() -> bool:
            got = raw_samples(receiver, at, window, drop="cluster")
            state["got"] = got
            return got == want

        try:
            wait_for(same, 30, interval=0.5, what="the receiver to hold the sender's samples")
        except AssertionError:
            raise AssertionError(describe_diff(want, state.get("got", {}))) from None

        # every forwarded series carries the external label, and nothing else was added
        labelled = raw_samples(receiver, at, window)
        assert all(dict(k).get("cluster") == "e2e" for k in labelled)
        assert len(labelled) == len(want)

        # sample counts over the closed window agree for a few well-known series
        for expr in ('up{job="node"}', 'up{job="prometheus"}', 'node_cpu_seconds_total{mode="idle"}',
                     "prometheus_tsdb_head_series"):
            query = f"count_over_time({expr}[{window}s])"
            sent = {tuple(sorted(r["metric"].items())): r["value"][1] for r in sender.query(query, at)}
            got = {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "cluster")): r["value"][1]
                   for r in receiver.query(query, at)}
            assert sent and got == sent, (expr, sent, got)
            assert all(int(v) >= 2 for v in sent.values()), sent  # several scrapes each

        assert metric_sum(node, "prometheus_remote_storage_samples_failed_total") == 0
        assert metric_sum(node, "prometheus_remote_storage_samples_total") > 0
    finally:
        if sender is not None:
            sender.stop()
        if node is not None:
            node.stop()
        exporter.stop()
        receiver.stop()
    assert "level=error" not in node.log(), node.log()[-3000:]
