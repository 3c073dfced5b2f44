"""The inputs of known defects, one case each, so that every one of them stays fixed.

Cases that break a node (a regex freeze, a dead search writer, a stalled event loop) get a node of their own.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import snappy

from service.proto.push_pb2 import PushRequest
from tests.fuzz.client import send
from tests.fuzz.conftest import RW_INSTANCE, FuzzEnv, logs_config
from tests.helpers.e2e_helpers import RW_HEADERS, WRITE
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, node_config, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def own_node(tmp_path: Path) -> Iterator[tuple[NodeProcess, LokiCapture]]:
    """A node with the fuzz node's logs and search set-up, for cases that may break it."""
    with LokiCapture() as loki:
        node = NodeProcess(tmp_path / "node", node_config() + logs_config(loki.url)).start()
        try:
            yield node, loki
        finally:
            node.stop()


# --- 400s, not 500s (and no 204 for what a consumer cannot use) --------------------------------------------

CONFIG_CASES = [
    pytest.param("a: " + "[" * 500 + "]" * 500 + "\n", id="yaml-nested-500"),
    pytest.param("scrape_configs: []\x00\n", id="yaml-nul"),
    pytest.param("scrape_configs: []\x1f\n", id="yaml-control-char"),
]


@pytest.mark.parametrize("body", CONFIG_CASES)
def test_bad_yaml_is_a_400(fuzz_env: FuzzEnv, body: str) -> None:
    resp = send(fuzz_env.node, "PUT", "/agent/api/v1/config/known-defect", body.encode())
    assert resp.status == 400, resp.text
    assert resp.json()["data"]["error"].startswith("could not unmarshal config")


@pytest.mark.parametrize("query", [
    pytest.param("/api/logs/search?offset=9223372036854775808", id="offset-2^63"),
    pytest.param("/api/logs/histogram?bucket=9223372036854775808", id="bucket-2^63"),
    pytest.param("/api/logs/histogram?fromTimestamp=0&toTimestamp=253402300799999", id="histogram-all-time"),
])
def test_search_limits(fuzz_env: FuzzEnv, query: str) -> None:
    resp = send(fuzz_env.node, "GET", query, timeout=60)
    assert resp.status in (200, 400), resp.text[:300]
    if resp.status == 200:
        assert len(resp.json()["data"]["buckets"]) <= 10_000


def test_chat_with_a_huge_number(fuzz_env: FuzzEnv) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "errors in the last 99999999999999999999 hours"}]})
    resp = send(fuzz_env.node, "POST", "/api/chat", body, {"Content-Type": "application/json"}, timeout=30)
    assert resp.status in (200, 400), resp.text


def test_a_huge_header_is_431(fuzz_env: FuzzEnv) -> None:
    resp = send(fuzz_env.node, "GET", "/-/healthy", headers={"X-Big": "a" * (1 << 20)}, timeout=30)
    assert resp.status == 431


def test_url_passwords_are_never_shown(fuzz_env: FuzzEnv) -> None:
    body = "remote_write:\n- url: http://user:pw-s3cr3t@127.0.0.1:1/api/v1/write\n  name: secret\n"
    assert send(fuzz_env.node, "PUT", "/agent/api/v1/config/known-secret", body).status in (200, 201)
    try:
        wait_for(lambda: "known-secret" in send(fuzz_env.node, "GET", "/agent/api/v1/metrics/instances").text, 20,
                 what="the instance to run")
        for path in ("/agent/api/v1/configs/known-secret", "/-/config", "/metrics"):
            assert "pw-s3cr3t" not in send(fuzz_env.node, "GET", path).text, path
        assert "pw-s3cr3t" not in fuzz_env.node.log()
    finally:
        send(fuzz_env.node, "DELETE", "/agent/api/v1/config/known-secret")


def urllib_status(url: str, body: bytes, method: str = "POST", headers: dict[str, str] | None = None) -> int:
    """The status an ordinary Python client reads (urllib), or the exception it gets instead."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError) as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} instead of 413") from None


@pytest.mark.parametrize(("path", "size"), [
    pytest.param("/agent/api/v1/config/too-big", 12 << 20, id="config-12MiB"),
    pytest.param(WRITE.format(RW_INSTANCE), 40 << 20, id="write-40MiB"),
])
def test_oversized_bodies_get_a_readable_413(fuzz_env: FuzzEnv, path: str, size: int) -> None:
    headers = RW_HEADERS if "write" in path else {}
    assert urllib_status(f"http://127.0.0.1:{fuzz_env.node.port}{path}", b"a" * size, "PUT" if "config" in path
                         else "POST", headers) == 413


# --- cases that break a node: each on its own ------------------------------------------------------------

def push_proto(node: NodeProcess, seconds: int, line: str) -> int:
    req = PushRequest()
    s = req.streams.add()
    s.labels = '{job="known"}'
    e = s.entries.add()
    e.timestamp.seconds, e.line = seconds, line
    return send(node, "POST", "/loki/api/v1/push", snappy.compress(req.SerializeToString()),
                {"Content-Type": "application/x-protobuf"}).status


def searchable(node: NodeProcess, word: str) -> int:
    resp = send(node, "GET", f"/api/logs/search?query={word}&fromTimestamp=0")
    return resp.json()["data"]["total"] if resp.status == 200 else -1


def test_out_of_range_timestamps_are_400_and_search_survives(own_node: tuple[NodeProcess, LokiCapture]) -> None:
    node, _ = own_node
    huge_json = {"streams": [{"stream": {"job": "known"}, "values": [["99999999999999999999999999999", "x"]]}]}
    assert send(node, "POST", "/loki/api/v1/push", json.dumps(huge_json),
                {"Content-Type": "application/json"}).status == 400
    assert push_proto(node, 2**62, "y") == 400
    assert push_proto(node, int(time.time()), "afterwards") == 204
    wait_for(lambda: searchable(node, "afterwards") == 1, 15, what="a later push indexed")


def test_nul_in_a_json_label_name_is_400(own_node: tuple[NodeProcess, LokiCapture]) -> None:
    node, _ = own_node
    doc = {"streams": [{"stream": {"a\x00b": "v"}, "values": [[str(time.time_ns()), "nul"]]}]}
    resp = send(node, "POST", "/loki/api/v1/push", json.dumps(doc), {"Content-Type": "application/json"})
    assert resp.status == 400, resp.status


def test_non_ascii_basic_auth_is_401(tmp_path: Path) -> None:
    auth = "  http_auth:\n    basic_auth_users: {admin: s3cret}\n"
    node = NodeProcess(tmp_path / "node", node_config().replace("server:\n", "server:\n" + auth, 1)).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        conn.putrequest("GET", "/agent/api/v1/configs")
        conn.putheader("Authorization", "Basic é".encode())
        conn.endheaders()
        assert conn.getresponse().status == 401
        conn.close()
    finally:
        node.stop()


def healthy_within(node: NodeProcess, seconds: float) -> bool:
    try:
        return node.get("/-/healthy", timeout=seconds).status == 200
    except (OSError, TimeoutError):
        return False


def test_a_config_regex_never_freezes_the_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config()).start()
    try:
        body = ("scrape_configs:\n- job_name: freeze\n  static_configs:\n  - targets: ['127.0.0.1:1']\n"
                f"    labels: {{foo: {'a' * 30}}}\n  relabel_configs:\n"
                "  - {source_labels: [foo], regex: '(a|a)*b', action: drop}\n")
        assert send(node, "PUT", "/agent/api/v1/config/freeze", body).status in (200, 201, 400)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert healthy_within(node, 2.0), "/-/healthy did not answer within 2 s"
            time.sleep(0.2)
    finally:
        node.kill()


def test_a_big_config_never_stalls_health(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config()).start()
    body = ("scrape_configs:\n" + "".join(
        f"- job_name: j{i}\n  static_configs: [{{targets: ['127.0.0.1:1'], labels: {{k: '{'v' * 40}'}}}}]\n"
        for i in range(40_000)))[: (4 << 20) - 40_000]
    body = body[:body.rindex("\n- job_name") + 1]
    stalls: list[float] = []
    done = threading.Event()

    def put() -> None:
        try:
            node.request("PUT", "/agent/api/v1/config/big", body, timeout=120)
        except OSError:
            pass  # the node is killed as soon as a stall is seen
        finally:
            done.set()

    worker = threading.Thread(target=put, daemon=True)
    try:
        worker.start()
        while not done.is_set():  # stop at the first stall: a stalled node costs the suite its seconds
            started = time.monotonic()
            healthy_within(node, 1.0)
            stalls.append(time.monotonic() - started)
            assert stalls[-1] < 1.0, f"/-/healthy took over {stalls[-1]:.1f} s during a {len(body)} byte PUT"
            time.sleep(0.1)
    finally:
        node.kill()
        worker.join(30)
