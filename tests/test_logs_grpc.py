"""gRPC Loki push (``logproto.Pusher/Push``) on a ``loki_push_api`` listener of a real node.

The client is generated from tests/data/loki_push.proto with grpcio-tools when the tests run and runs in its
own process (tests/helpers/grpc_push_client.py). Loki is the capture stand-in (no real Loki runs here).
"""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.grpc_push_client import GrpcPushClient, generate
from tests.helpers.logs_node import node_yaml
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, free_port, request, wait_for

pytestmark = pytest.mark.slow


AUTH = "http_auth: {bearer_tokens: [s3cret-token], basic_auth_users: {pusher: pw1}}"


def grpc_node_yaml(loki_url: str, http_port: int, grpc_port: int, *, tls: dict[str, Path] | None = None,
                   auth: bool = False, max_recv: int = 64 << 10) -> str:
    """The shared push node with a gRPC port and search on, labelling what it receives pushserver=grpc."""
    return node_yaml(loki_url, http_port, grpc_port=grpc_port, tls=tls, max_recv=max_recv, pushserver="grpc",
                     search="{retention: 30d}", server_extra=AUTH if auth else "")


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("grpc_client"))


@pytest.fixture
def node(tmp_path: Path, loki: LokiCapture):
    n = NodeProcess(tmp_path / "node", grpc_node_yaml(loki.url, free_port(), grpc := free_port())).start()
    n.grpc_port = grpc  # type: ignore[attr-defined]
    yield n
    n.stop()


def stream(labels: str, lines: list[str], ts_ns: int, meta: dict[str, str] | None = None) -> dict:
    return {"labels": labels, "entries": [[ts_ns + i, line, *([meta] if meta else [])] for i, line in enumerate(lines)]}


def grpc_requests(node: NodeProcess) -> dict[str, float]:
    """loki_source_api_request_duration_seconds_count of gRPC calls by status_code."""
    text = node.get("/metrics").text
    pattern = (r'loki_source_api_request_duration_seconds_count\{method="gRPC",'
               r'route="/logproto.Pusher/Push",status_code="(\w+)",ws="false"\} (\S+)')
    return {code: float(value) for code, value in re.findall(pattern, text)}


def search(node: NodeProcess, tenant: str, query: str) -> dict:
    resp = node.request("GET", f"/api/logs/search?query={quote(query)}", headers={"X-Scope-OrgID": tenant})
    assert resp.status == 200, resp.text
    return resp.json()["data"]


def test_grpc_push_reaches_loki_with_labels_tenant_and_is_searchable(gen: Path, node: NodeProcess,
                                                                     loki: LokiCapture) -> None:
    now = time.time_ns()
    with GrpcPushClient(gen, f"127.0.0.1:{node.grpc_port}") as client:  # type: ignore[attr-defined]
        out = client.push([stream('{b="2",a="1"}', ["grpc alpha", "grpc beta"], now, {"trace_id": "t-1"}),
                           stream('{a="x", __drop="yes"}', ["grpc dropped"], now)],
                          {"x-scope-orgid": "team-g"})
    assert out["code"] == "OK", out
    wait_for(lambda: {"grpc alpha", "grpc beta"} <= set(loki.capture.lines()), 10, what="lines at Loki")
    got = [e for e in loki.capture.entries if e.line.startswith("grpc ")]
    assert {e.line for e in got} == {"grpc alpha", "grpc beta"}
    assert {e.labels for e in got} == {'{a="1", b="2", cluster="c1", pushserver="grpc"}'}
    assert {e.tenant for e in got} == {"team-g"}
    assert sorted(e.ts_ns for e in got) == [now, now + 1]  # use_incoming_timestamp
    assert {e.metadata for e in got} == {(("trace_id", "t-1"),)}
    found = wait_for(lambda: (d := search(node, "team-g", "grpc"))["total"] == 2 and d, 30, what="searchable")
    assert {log["message"] for log in found["logs"]} == {"grpc alpha", "grpc beta"}
    assert search(node, "other-tenant", "grpc")["total"] == 0
    assert grpc_requests(node).get("success") == 1.0


def test_grpc_malformed_and_oversized_messages_are_refused_and_node_stays_up(gen: Path, node: NodeProcess,
                                                                             loki: LokiCapture) -> None:
    now = time.time_ns()
    with GrpcPushClient(gen, f"127.0.0.1:{node.grpc_port}") as client:  # type: ignore[attr-defined]
        cases = [
            (client.raw(b"\x0a\x05\x0a\x03\xff\xfe\xfd"), "PushRequest.streams[0].labels: invalid UTF-8"),
            (client.raw(b"\x0a\x04\x12\x02\x12\x09"), "streams[0].entries[0].line: field runs past the end"),
            (client.raw(b"\x0a\x06\x12\x04\x0a\x02\x08\xff"), "streams[0].entries[0].timestamp.seconds: truncated"),
            (client.raw(b"\x0b\x01"), "PushRequest.field 1: unsupported wire type 3"),
            (client.raw(b"\x00\x01"), "PushRequest: invalid field number 0"),
            (client.push([stream("{a=", ["bad labels"], now)]), "streams: "),
            (client.push([stream('{a="1"}', ["bad tenant"], now)], {"x-scope-orgid": "a/b"}), "x-scope-orgid: "),
            (client.push([stream('{a="1"}', ["year 10000"], 253_402_300_800 * 10**9)]), "timestamp: "),
        ]
        for out, words in cases:
            assert out["code"] == "INVALID_ARGUMENT" and words in out["details"], (words, out)
        big = client.push([stream('{a="1"}', ["x" * 100_000], now)])
        assert big["code"] == "RESOURCE_EXHAUSTED", big
        # a push with one bad stream keeps the good one, as over HTTP
        mixed = client.push([stream('{a="ok"}', ["kept line"], now), stream("{a=", ["lost line"], now)])
        assert mixed["code"] == "INVALID_ARGUMENT" and "{a=" in mixed["details"], mixed
        assert client.push([stream('{a="1"}', ["after the errors"], now)])["code"] == "OK"
    wait_for(lambda: {"kept line", "after the errors"} <= set(loki.capture.lines()), 10, what="good lines")
    assert not {"lost line", "bad tenant", "year 10000"} & set(loki.capture.lines())
    assert node.get("/-/ready").status == 200 and node.proc is not None and node.proc.poll() is None
    counts = grpc_requests(node)
    assert counts.get("InvalidArgument") == 9.0 and counts.get("success") == 1.0, counts


def test_grpc_kill9_mid_stream_loses_no_acknowledged_entry(gen: Path, tmp_path: Path, loki: LokiCapture) -> None:
    """Loki refuses everything while the node is flooded, so acknowledged entries live only in the WAL when
    the node is killed with SIGKILL; after a restart every one of them must reach Loki."""
    grpc_port = free_port()
    node = NodeProcess(tmp_path / "node", grpc_node_yaml(loki.url, free_port(), grpc_port, max_recv=4 << 20)).start()
    loki.capture.fail(503)
    acked: set[int] = set()
    try:
        with GrpcPushClient(gen, f"127.0.0.1:{grpc_port}") as client:
            for out in client.flood("k9", lines=200, concurrency=4):
                if "ack" in out:
                    acked.add(out["ack"])
                    if len(acked) == 15:
                        node.stop(signal.SIGKILL)  # pushes are in flight: their answers are never sent
                else:
                    assert out["end"] in ("UNAVAILABLE", "CANCELLED", "UNKNOWN", "INTERNAL"), out
        assert len(acked) >= 15
        loki.capture.recover()
        node.start()
        expected = {f"k9-{batch}-{i}" for batch in acked for i in range(200)}
        wait_for(lambda: expected <= set(loki.capture.lines()), 60, what=f"{len(expected)} acknowledged lines")
    finally:
        node.stop()


def test_grpc_tls_and_auth(gen: Path, tmp_path: Path, loki: LokiCapture) -> None:
    certs = make_certs(tmp_path / "certs")
    http_port, grpc_port = free_port(), free_port()
    node = NodeProcess(tmp_path / "node", grpc_node_yaml(loki.url, http_port, grpc_port, tls=certs, auth=True)).start()
    now = time.time_ns()
    try:
        with GrpcPushClient(gen, f"127.0.0.1:{grpc_port}", ca=certs["ca.crt"]) as client:
            none = client.push([stream('{a="1"}', ["no credentials"], now)])
            assert (none["code"], none["details"]) == ("UNAUTHENTICATED", "authentication required"), none
            wrong = client.push([stream('{a="1"}', ["wrong token"], now)], {"authorization": "Bearer nope"})
            assert wrong["code"] == "UNAUTHENTICATED", wrong
            bearer = client.push([stream('{a="1"}', ["tls bearer"], now)], {"authorization": "Bearer s3cret-token"})
            assert bearer["code"] == "OK", bearer
            basic = client.push([stream('{a="1"}', ["tls basic"], now)],
                                {"authorization": "Basic cHVzaGVyOnB3MQ=="})  # pusher:pw1
            assert basic["code"] == "OK", basic
        with GrpcPushClient(gen, f"127.0.0.1:{grpc_port}") as plain:  # plaintext against the TLS port
            out = plain.push([stream('{a="1"}', ["plaintext"], now)], {"authorization": "Bearer s3cret-token"})
            assert out["code"] == "UNAVAILABLE", out
        wait_for(lambda: {"tls bearer", "tls basic"} <= set(loki.capture.lines()), 10, what="TLS lines at Loki")
        lines = loki.capture.lines()
        assert not {"no credentials", "wrong token", "plaintext"} & set(lines)
        assert grpc_requests(node).get("Unauthenticated") == 2.0
        # the HTTP side of the same listener still speaks HTTPS only (unchanged by the gRPC port)
        with pytest.raises(OSError):
            request(http_port, "GET", "/ready", timeout=5)
    finally:
        node.stop()


def test_grpc_port_in_use_makes_the_node_exit_1(tmp_path: Path, loki: LokiCapture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = NodeProcess(tmp_path / "node", grpc_node_yaml(loki.url, free_port(), port)).start(wait_ready=False)
        assert node.proc is not None
        assert node.proc.wait(30) == 1
    line = f"loki_push_api api: gRPC: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert line in node.log(), node.log()


def test_grpc_answers_unavailable_with_retry_info_when_forwarding_is_behind(gen: Path, tmp_path: Path) -> None:
    """The backlog limit is not a node setting, so this runs a logs instance in-process with a 1-byte limit
    (real WAL, real gRPC server, the generated client in its process); Loki refuses, so the backlog grows."""
    import asyncio

    from service.config.schema import loads
    from service.logs.config import LogsConfig, LogsInstanceConfig
    from service.logs.manager import LogsManager
    from tests.helpers.aio import run

    with LokiCapture() as loki:
        loki.capture.fail(503)
        grpc_port = free_port()
        cfg = loads(LogsInstanceConfig, f"""
name: default
clients: [{{url: "{loki.url}", batchwait: 10ms}}]
scrape_configs:
- job_name: api
  loki_push_api:
    server: {{http_listen_address: 127.0.0.1, http_listen_port: {free_port()}, grpc_listen_port: {grpc_port}}}
""")

        async def body() -> list[dict]:
            manager = LogsManager(LogsConfig(positions_directory=str(tmp_path / "pos"), configs=[cfg]),
                                  str(tmp_path / "wal"), max_backlog_bytes=1)  # the manager starts its listeners
            await manager.start()
            try:
                with GrpcPushClient(gen, f"127.0.0.1:{grpc_port}") as client:
                    outcomes = []
                    for n in range(30):  # the client holds its first batch while Loki refuses it
                        entries = [stream('{a="1"}', [f"line {n}"], time.time_ns())]
                        outcomes.append(await asyncio.to_thread(client.push, entries))
                        if outcomes[-1]["code"] != "OK":
                            break
                    return outcomes
            finally:
                await manager.stop()

        *accepted, second = run(body(), 60)
    assert accepted and all(out["code"] == "OK" for out in accepted), accepted
    assert second["code"] == "UNAVAILABLE" and "behind" in second["details"], second
    assert second["trailers"]["grpc-retry-pushback-ms"] == "5000"
    assert second["retry_delay"] == 5


def test_grpc_listener_rebinds_its_port_after_a_reload(gen: Path, node: NodeProcess, loki: LokiCapture) -> None:
    """A reload that changes the listener restarts its instance: the gRPC port is released and bound again
    (SO_REUSEPORT is off, so a port still held would fail the restart) and the new rules apply."""
    node.config_path.write_text(node.config_path.read_text().replace("pushserver: grpc", "pushserver: reloaded"))
    assert node.request("POST", "/-/reload").status == 200
    with GrpcPushClient(gen, f"127.0.0.1:{node.grpc_port}") as client:  # type: ignore[attr-defined]
        out = wait_for(lambda: (o := client.push([stream('{a="1"}', ["after reload"], time.time_ns())]))["code"]
                       == "OK" and o, 20, what="a push to the restarted gRPC port")
    assert out["code"] == "OK"
    wait_for(lambda: "after reload" in loki.capture.lines(), 10, what="the line at Loki")
    got = next(e for e in loki.capture.entries if e.line == "after reload")
    assert got.labels == '{a="1", cluster="c1", pushserver="reloaded"}'
    assert "gRPC push listening" in node.log().split("logs instance stopped", 1)[1]


def test_node_grpc_port_feeds_the_default_instance(gen: Path, tmp_path: Path, loki: LokiCapture) -> None:
    """``server.grpc_listen_port`` serves the push on the node itself, like the main HTTP port: into the
    instance named default, incoming labels and timestamps kept (this instance has no loki_push_api)."""
    grpc_port = free_port()
    node = NodeProcess(tmp_path / "node", f"""
server:
  grpc_listen_port: {grpc_port}
metrics:
  wal_directory: data-agent
logs:
  positions_directory: positions
  configs:
  - name: default
    clients: [{{url: "{loki.url}", batchwait: 50ms}}]
""").start()
    try:
        with GrpcPushClient(gen, f"127.0.0.1:{grpc_port}") as client:
            out = client.push([stream('{app="main", __keep="no"}', ["main port line"], 1_700_000_000 * 10**9)],
                              {"x-scope-orgid": "team-m"})
        assert out["code"] == "OK", out
        wait_for(lambda: "main port line" in loki.capture.lines(), 10, what="the line at Loki")
        got = next(e for e in loki.capture.entries if e.line == "main port line")
        assert (got.labels, got.tenant, got.ts_ns) == ('{app="main"}', "team-m", 1_700_000_000 * 10**9)
        assert "listener=server" in node.log()
    finally:
        node.stop()
