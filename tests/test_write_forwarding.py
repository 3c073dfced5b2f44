"""Remote writes reach the node that runs the instance whichever node they are sent to (3 real nodes on a
real etcd): forwarded to the owner, answered with the owner's answer, never bounced between nodes."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.cluster_harness import INSTANCES, NodeCluster, cluster_config, config_body
from tests.helpers.e2e_helpers import metric_sum, metric_values
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.ports import free_port
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.rw_payloads import simple_series, write_body

NAMES = [f"team-{i}" for i in range(6)]
WRITE = "/agent/api/v1/metrics/instance/{}/write"
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


@pytest.fixture
def cluster(tmp_path: Path, etcd: EtcdServer) -> Iterator[NodeCluster]:
    c = NodeCluster(tmp_path, etcd.endpoint)
    try:  # nodes started by a setup that fails are stopped too
        c.add(3)
        c.put(NAMES)
        wait_for(lambda: c.exactly_once(NAMES), 30, what="every config on its owner")
        yield c
    finally:
        c.close()


def samples_received(node: NodeProcess) -> float:
    return metric_sum(node, "agent_remote_write_receiver_samples_total")


def owners(cluster: NodeCluster) -> dict[str, NodeProcess]:
    return {name: cluster.nodes[node_id] for node_id, names in cluster.running().items() for name in names}


def test_a_write_to_any_node_lands_on_the_owner(cluster: NodeCluster) -> None:
    owner_of = owners(cluster)
    before = {nid: samples_received(n) for nid, n in cluster.nodes.items()}
    sent: dict[str, float] = dict.fromkeys(cluster.nodes, 0.0)
    for i, name in enumerate(NAMES):
        for node in cluster.nodes.values():
            body = write_body(simple_series(10, via=node.node_id), ts_ms=1_700_000_000_000 + i)  # type: ignore[attr-defined]
            r = node.request("POST", WRITE.format(name), body, HEADERS)
            assert r.status == 204, (name, node.node_id, r.status, r.text)  # type: ignore[attr-defined]
            sent[owner_of[name].node_id] += 10  # type: ignore[attr-defined]
    # Every sample was appended by the owner, none by the nodes that passed them on.
    assert {nid: samples_received(n) - before[nid] for nid, n in cluster.nodes.items()} == sent
    forwarded = sum(metric_sum(n, "agent_remote_write_receiver_forwarded_requests_total")
                    for n in cluster.nodes.values())
    assert forwarded == len(NAMES) * 2  # each config: from the two nodes that do not run it


def test_owner_errors_are_passed_back_and_nothing_bounces(cluster: NodeCluster) -> None:
    owner_of = owners(cluster)
    name = NAMES[0]
    other = next(n for n in cluster.nodes.values() if n is not owner_of[name])
    # The owner's 400 for a body that is not a WriteRequest comes back through the forwarding node.
    bad = other.request("POST", WRITE.format(name), b"not snappy", HEADERS)
    assert bad.status == 400 and "snappy" in bad.text.lower()
    # Unknown configs are refused by every node, as Grafana Agent does.
    for node in cluster.nodes.values():
        r = node.request("POST", WRITE.format("nope"), write_body(simple_series(1)), HEADERS)
        assert r.status == 400 and r.text == "instance nope does not exist\n"
    # A request that was already forwarded is not forwarded again: the sender is asked to retry.
    again = other.request("POST", WRITE.format(name), write_body(simple_series(1)),
                          {**HEADERS, "X-Scraping-Service-Forwarded": "1"})
    assert again.status == 503 and again.headers.get("retry-after") == "1"


def test_owner_gone_means_retry_then_the_new_owner_takes_the_write(cluster: NodeCluster) -> None:
    owner_of = owners(cluster)
    name = NAMES[0]
    owner = owner_of[name]
    other = next(n for n in cluster.nodes.values() if n is not owner)
    cluster.remove(owner.node_id)  # type: ignore[attr-defined]  # SIGTERM: a graceful leave
    body = write_body(simple_series(5))

    def accepted() -> bool:
        r = other.request("POST", WRITE.format(name), body, HEADERS)
        assert r.status in (204, 503), (r.status, r.text)  # never a 400 that would make the sender drop it
        return r.status == 204

    wait_for(accepted, 30, interval=0.1, what="the write accepted once the config moved")
    assert any(name in names for names in cluster.running().values())


def test_forwarding_between_tls_nodes_that_require_client_certificates(tmp_path: Path, etcd: EtcdServer) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = (f"  http_tls_config:\n    cert_file: {certs['server.crt']}\n    key_file: {certs['server.key']}\n"
           f"    client_ca_file: {certs['ca.crt']}\n    client_auth_type: RequireAndVerifyClientCert\n")
    ctx = ssl.create_default_context(cafile=str(certs["ca.crt"]))
    ctx.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))

    def https(node: NodeProcess, method: str, path: str, body: bytes = b"",
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", node.port, context=ctx, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    nodes = []
    try:
        for node_id in ("t0", "t1"):
            text = cluster_config(node_id, etcd_endpoint=etcd.endpoint, namespace="tls")
            nodes.append(NodeProcess(tmp_path / node_id, text.replace("server:\n", "server:\n" + tls, 1))
                         .start(wait_ready=False))
        for node in nodes:
            wait_for(lambda node=node: https(node, "GET", "/-/ready")[0] == 200, 30, what="https readiness")
        assert https(nodes[0], "PUT", "/agent/api/v1/config/secure", config_body("secure").encode())[0] == 201

        def owner() -> NodeProcess | None:
            for node in nodes:
                status, body = https(node, "GET", INSTANCES)
                if status == 200 and "secure" in json.loads(body)["data"]:
                    return node
            return None

        owning = wait_for(owner, 30, what="the config running on one node")
        other = next(n for n in nodes if n is not owning)
        status, body = https(other, "POST", WRITE.format("secure"), write_body(simple_series(7)), HEADERS)
        assert status == 204, body
        metrics = https(owning, "GET", "/metrics")[1].decode()
        assert sum(v for _, v in metric_values(metrics, "agent_remote_write_receiver_samples_total")) == 7
    finally:
        for node in nodes:
            node.stop()


def test_real_prometheus_writes_through_a_node_that_does_not_run_the_instance(tmp_path: Path,
                                                                             etcd: EtcdServer) -> None:
    receiver = PrometheusServer(tmp_path, receiver=True).start()
    cluster = NodeCluster(tmp_path, etcd.endpoint)
    sender = None
    try:
        cluster.add(2)
        body = f"remote_write:\n  - url: {receiver.write_url}\n    queue_config: {{batch_send_deadline: 200ms}}\n"
        first = next(iter(cluster.nodes.values()))
        assert first.request("PUT", "/agent/api/v1/config/relay", body).status == 201
        wait_for(lambda: cluster.exactly_once(["relay"]), 30, what="the config on its owner")
        owner = owners(cluster)["relay"]
        other = next(n for n in cluster.nodes.values() if n is not owner)
        sender_port = free_port()
        sender = PrometheusServer(tmp_path, receiver=False, agent=True, config=f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: sender
    static_configs: [{{targets: ['127.0.0.1:{sender_port}']}}]
remote_write:
  - url: http://127.0.0.1:{other.port}{WRITE.format('relay')}
    queue_config: {{batch_send_deadline: 500ms}}
""")
        sender.port, sender.url = sender_port, f"http://127.0.0.1:{sender_port}"
        sender.start()
        # The sender's own series reach the receiver, through the node that does not run `relay`.
        wait_for(lambda: receiver.query('up{job="sender"} == 1'), 40, interval=0.5,
                 what="the sender's up at the receiver")
        assert len(receiver.series('{job="sender"}')) > 100
        forwarded = dict(metric_values(other.get("/metrics").text,
                                       "agent_remote_write_receiver_forwarded_requests_total"))
        assert forwarded.get('{code="204"}', 0) > 0
        assert not [code for code in forwarded if code.startswith('{code="4')]  # nothing the sender would drop
        assert samples_received(owner) > 0 and samples_received(other) == 0
    finally:
        if sender is not None:
            sender.stop()
        cluster.close()
        receiver.stop()


def test_a_config_put_a_moment_ago_is_retried_not_refused(cluster: NodeCluster) -> None:
    # Before any node's reshard has seen the new config, writes for it ask the sender to retry (503), never
    # refuse it (a 400 makes Prometheus drop the batch); once placed they land.
    node = next(iter(cluster.nodes.values()))
    body = write_body(simple_series(3))
    assert node.request("PUT", "/agent/api/v1/config/fresh", config_body("fresh")).status == 201
    statuses = []

    def accepted() -> bool:
        statuses.append(node.request("POST", WRITE.format("fresh"), body, HEADERS).status)
        return statuses[-1] == 204

    wait_for(accepted, 30, interval=0.02, what="the write for the new config accepted")
    assert set(statuses) <= {503, 204}, statuses
    # A name that is not stored is still refused, and asking the store again is rate-limited (no error).
    for _ in range(3):
        assert node.request("POST", WRITE.format("never"), body, HEADERS).status == 400
