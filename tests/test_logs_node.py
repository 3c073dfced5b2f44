"""The Loki push receiver and forwarding through real node subprocesses and a real capture server."""

from __future__ import annotations

import gzip
import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import snappy

from service.proto.push_pb2 import PushRequest
from tests.helpers.logs_node import node_yaml, proto_body
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, free_port, request, wait_for

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def node(tmp_path: Path, loki: LokiCapture):
    push_port = free_port()
    n = NodeProcess(tmp_path / "node", node_yaml(loki.url, push_port, max_recv=64 << 10)).start()
    n.push_port = push_port  # type: ignore[attr-defined]
    yield n
    n.stop()


def wait_lines(loki: LokiCapture, expected: set[str], timeout: float = 10) -> None:
    wait_for(lambda: expected <= set(loki.capture.lines()), timeout, what=f"{len(expected)} lines at Loki")


def test_protobuf_push_forwarded_with_labels_and_tenant(node: NodeProcess, loki: LokiCapture) -> None:
    body = proto_body([('{b="2",a="1",}', ["p1", "p2"]), ('{a="x", __drop="yes"}', ["dropped"])])
    r = node.request("POST", "/loki/api/v1/push", body, {**PROTO, "X-Scope-OrgID": "team-a"})
    assert r.status == 204 and r.body == b""
    wait_lines(loki, {"p1", "p2"})
    got = [e for e in loki.capture.entries if e.line in ("p1", "p2")]
    assert {e.labels for e in got} == {'{a="1", b="2", cluster="c1", pushserver="api"}'}
    assert {e.tenant for e in got} == {"team-a"}
    assert [e.ts_ns for e in got] == [1_700_000_000 * 10**9, 1_700_000_000 * 10**9 + 1]
    assert "dropped" not in loki.capture.lines()


def test_json_push_gzip_with_metadata_on_push_port(node: NodeProcess, loki: LokiCapture) -> None:
    doc = {"streams": [{"stream": {"app": "j"}, "values": [["1700000000000000005", "j1", {"trace": "t1"}],
                                                           ["1700000000000000006", "j2"]]}]}
    body = gzip.compress(json.dumps(doc).encode())
    r = request(node.push_port, "POST", "/api/v1/push", body,  # type: ignore[attr-defined]
                {**JSON, "Content-Encoding": "gzip"})
    assert r.status == 204, r.text
    wait_lines(loki, {"j1", "j2"})
    j1 = next(e for e in loki.capture.entries if e.line == "j1")
    assert j1.metadata == (("trace", "t1"),) and j1.ts_ns == 1700000000000000005
    assert j1.labels == '{app="j", cluster="c1", pushserver="api"}'
    assert request(node.push_port, "GET", "/ready").text == "ready"  # type: ignore[attr-defined]


def test_raw_and_named_instance_endpoints(node: NodeProcess, loki: LokiCapture) -> None:
    r = node.request("POST", "/agent/api/v1/logs/instance/default/raw", "r1\r\n\nr2\n", {"X-Scope-OrgID": "t2"})
    assert r.status == 204, r.text
    wait_lines(loki, {"r1", "r2"})
    assert {e.labels for e in loki.capture.entries} == {'{cluster="c1", pushserver="api"}'}
    r = node.request("POST", "/agent/api/v1/logs/instance/nope/push", proto_body([('{a="1"}', ["x"])]), PROTO)
    assert (r.status, r.text) == (400, "instance nope does not exist\n")
    assert node.get("/agent/api/v1/logs/instances").json() == {"status": "success", "data": ["default"]}
    assert node.get("/agent/api/v1/logs/targets").json() == {"status": "success", "data": []}


def test_bad_input_is_rejected_and_nothing_half_written(node: NodeProcess, loki: LokiCapture) -> None:
    cases = [
        (b"{not json", JSON, 400, "ReadJSON"),
        (b'{"streams":[{"stream":{"a":"1"},"values":[[1700000000000000000,"num"]]}]}', JSON, 400,
         "can't find closing"),
        (b"\x40\xff\xffgarbage", PROTO, 400, ""),
        (snappy.compress(b"\x0a\xff\xff"), PROTO, 400, ""),
        (proto_body([('{a="1"}', ["enc"])]), {**PROTO, "Content-Encoding": "br"}, 400, 'Content-Encoding "br"'),
        (proto_body([('{a="1"}', ["notenant"])]), {**PROTO, "X-Scope-OrgID": "bad/tenant"}, 400, "tenant"),
        (proto_body([('{a="1"}', ["nomime"])]), {}, 400, "mime: no media type"),
    ]
    for body, headers, status, text in cases:
        r = node.request("POST", "/loki/api/v1/push", body, headers)
        assert r.status == status and text in r.text, (headers, r.status, r.text)
        assert r.headers["content-type"].startswith("text/plain")
    big = proto_body([('{a="1"}', ["x" * 200_000])])
    r = request(node.push_port, "POST", "/loki/api/v1/push", big, PROTO)  # type: ignore[attr-defined]
    assert r.status == 413, r.text
    big_json = json.dumps({"streams": [{"stream": {"a": "1"}, "values": [["1", "y" * 100_000]]}]})
    r = request(node.push_port, "POST", "/loki/api/v1/push", big_json, JSON)  # type: ignore[attr-defined]
    assert r.status == 413, r.text
    # a bad label string skips that stream only: 400 naming it, the good stream is kept
    r = node.request("POST", "/loki/api/v1/push", proto_body([('{a=1}', ["bad"]), ('{a="ok"}', ["good"])]), PROTO)
    assert r.status == 400 and "{a=1}" in r.text
    wait_lines(loki, {"good"})
    r = node.request("POST", "/loki/api/v1/push", proto_body([('{a="end"}', ["end"])]), PROTO)
    assert r.status == 204
    wait_lines(loki, {"end"})
    assert sorted(loki.capture.lines()) == ["end", "good"]


def test_metrics_exposed(node: NodeProcess, loki: LokiCapture) -> None:
    assert node.request("POST", "/loki/api/v1/push", proto_body([('{a="m"}', ["m1"])]), PROTO).status == 204
    wait_lines(loki, {"m1"})
    def sent() -> bool:
        text = node.get("/metrics").text
        return f'loki_write_sent_entries_total{{host="127.0.0.1:{loki.port}",tenant=""}} 1.0' in text
    wait_for(sent, 5, what="loki_write_sent_entries_total")
    text = node.get("/metrics").text
    assert "\nloki_source_api_entries_written 1.0" in text
    assert 'loki_source_api_request_duration_seconds_count{method="POST",route="loki_api_v1_push"' in text
    assert "loki_source_api_tcp_connections" in text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restart_mid_stream_delivers_every_acknowledged_line(tmp_path: Path, loki: LokiCapture, sig: int) -> None:
    push_port = free_port()
    n = NodeProcess(tmp_path / "node", node_yaml(loki.url, push_port, batchwait="20ms")).start()
    acked: list[str] = []
    try:
        for round_ in range(2):
            loki.capture.fail(503 if round_ == 0 else 0)
            for i in range(40):
                line = f"r{round_}-{i}"
                r = n.request("POST", "/loki/api/v1/push", proto_body([('{a="rs"}', [line])]), PROTO)
                assert r.status == 204, r.text
                acked.append(line)
            if round_ == 0:
                wait_for(lambda: loki.capture.failed >= 2, 10, what="failed sends during the outage")
        n.stop(sig)
        loki.capture.recover()
        n.start()
        wait_lines(loki, set(acked), timeout=20)
        for i in range(5):
            assert n.request("POST", "/loki/api/v1/push", proto_body([('{a="rs"}', [f"after-{i}"])]),
                             PROTO).status == 204
            acked.append(f"after-{i}")
        wait_lines(loki, set(acked), timeout=10)
    finally:
        n.stop()
    counts = Counter(loki.capture.lines())
    dups = {k: v for k, v in counts.items() if v > 1}
    assert set(counts) == set(acked)
    if sig == signal.SIGTERM:
        assert not dups, f"duplicates after a graceful restart: {dups}"
    else:
        # kill -9 can only duplicate a batch Loki acknowledged before the marker was stored
        assert sum(v - 1 for v in dups.values()) <= 40, dups


def test_restamped_pushes_keep_lines_metadata_and_labels(tmp_path: Path, loki: LokiCapture) -> None:
    """A push target that re-stamps (Alloy's default) and sets labels: the byte-level rewrite of protobuf
    and the hand-encoded JSON both reach Loki with the receipt time, the rules' labels and the metadata."""
    push_port = free_port()
    cfg = node_yaml(loki.url, push_port).replace("use_incoming_timestamp: true", "use_incoming_timestamp: false")
    n = NodeProcess(tmp_path / "node", cfg).start()
    try:
        req = PushRequest()
        s = req.streams.add()
        s.labels = '{app="p"}'
        for i in range(3):
            e = s.entries.add()
            e.timestamp.seconds, e.timestamp.nanos = 1_600_000_000, i
            e.line = f"rp{i}"
            e.structuredMetadata.add(name="trace", value=f"t{i}")
        doc = {"streams": [{"stream": {"app": "j"}, "values": [["5", "rj0", {"trace": "tj"}], ["6", "rj1"]]}]}
        before = time.time_ns()
        r1 = request(push_port, "POST", "/loki/api/v1/push", snappy.compress(req.SerializeToString()), PROTO)
        r2 = request(push_port, "POST", "/loki/api/v1/push", json.dumps(doc).encode(), JSON)
        after = time.time_ns()
        assert (r1.status, r2.status) == (204, 204), (r1.text, r2.text)
        wait_lines(loki, {"rp0", "rp1", "rp2", "rj0", "rj1"})
        got = {e.line: e for e in loki.capture.entries}
        assert all(before <= got[k].ts_ns <= after for k in ("rp0", "rp1", "rp2", "rj0", "rj1"))
        assert got["rp1"].metadata == (("trace", "t1"),) and got["rj0"].metadata == (("trace", "tj"),)
        assert got["rp2"].labels == '{app="p", cluster="c1", pushserver="api"}'
        assert got["rj1"].labels == '{app="j", cluster="c1", pushserver="api"}' and got["rj1"].metadata == ()
    finally:
        n.stop()
