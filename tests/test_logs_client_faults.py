"""Loki forwarding survives what once killed it: a full disk under its progress marker, credentials both in
the URL and in basic_auth, a failing Loki at shutdown, and a Retry-After. The Loki side is the capture server
(tests/helpers/loki_capture.py): no real Loki runs here."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from service.logs.client import redacted, split_userinfo
from service.wal import wal_dir_for
from tests.helpers.logs_node import logs_node_yaml, proto_body
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.tmpfs import fill, mounted_tmpfs

PROTO = {"Content-Type": "application/x-protobuf"}


def config(url: str, *, client_extra: str = "", search: bool = False) -> str:
    return logs_node_yaml(loki_url=url, client_extra=client_extra,
                          search=f"{{enabled: {'true' if search else 'false'}}}")


def push(node: NodeProcess, tag: str, n: int) -> None:
    resp = node.request("POST", "/loki/api/v1/push",
                        proto_body([(f'{{job="{tag}"}}', [f"{tag} {i}" for i in range(n)])], ts=int(time.time())),
                        PROTO)
    assert resp.status == 204, resp.text


def logs_status(node: NodeProcess) -> dict:
    return node.get("/api/status").json()["data"]["logs"]


def test_url_credentials_helpers() -> None:
    url, header = split_userinfo("https://u%40x:p%3Ass@loki.example:3100/loki/api/v1/push")
    assert url == "https://loki.example:3100/loki/api/v1/push"
    assert header == "Basic " + base64.b64encode(b"u@x:p:ss").decode()
    assert split_userinfo("http://127.0.0.1:1/x") == ("http://127.0.0.1:1/x", None)
    assert redacted("http://user:secret@h:1/p") == "http://user:xxxxx@h:1/p"
    assert redacted("plain-name") == "plain-name"


@pytest.fixture
def marker_tmpfs(tmp_path: Path):
    """The node's logs WAL markers directory on a 64 KiB tmpfs filled up (needs root and mount)."""
    workdir = tmp_path / "node"
    markers = Path(wal_dir_for(str(workdir / "data-agent" / "logs"), "default")) / "markers"
    with mounted_tmpfs(markers, "64k"):
        filler = markers / "filler"
        fill(filler)
        yield workdir, filler


@pytest.mark.slow
def test_full_disk_for_the_marker_keeps_forwarding_and_recovers(marker_tmpfs) -> None:
    workdir, filler = marker_tmpfs
    with LokiCapture() as loki:
        node = NodeProcess(workdir, config(loki.url)).start()
        try:
            for _ in range(6):
                push(node, "full", 200)
            wait_for(lambda: len(loki.capture.lines()) == 1_200, 30, what="lines forwarded while the disk is full")
            status = logs_status(node)
            client = status["instances"]["default"]["clients"][0]
            assert status["healthy"] is False and client["healthy"] is False and client["running"] is True
            assert "No space left" in client["lastError"]
            metrics = node.get("/metrics").text
            assert 'loki_write_client_errors_total{host="127.0.0.1:' in metrics and 'reason="marker_write"' in metrics
            assert node.get("/api/status").json()["data"]["status"] == "degraded"

            filler.unlink()  # space comes back: no restart needed
            push(node, "after", 60)
            wait_for(lambda: len(loki.capture.lines()) == 1_260, 30, what="lines forwarded after space came back")
            wait_for(lambda: logs_status(node)["healthy"], 10, what="the client healthy again")
            markers = [p for p in filler.parent.iterdir() if p.name.startswith("loki")]
            assert markers, "the marker was stored once space came back"
        finally:
            node.stop()
        assert sorted(loki.capture.lines()) == sorted([f"full {i}" for i in range(200)] * 6
                                                       + [f"after {i}" for i in range(60)])


@pytest.mark.slow
def test_basic_auth_and_url_credentials_together_forward_with_the_urls(tmp_path: Path) -> None:
    """Promtail accepts both and sends the URL's; the client must not die, nor show the password."""
    with LokiCapture() as loki:
        url = loki.url.replace("http://", "http://urluser:urlsecret@")
        extra = "basic_auth: {username: cfguser, password: cfgsecret}"
        node = NodeProcess(tmp_path / "node", config(url, client_extra=extra)).start()
        try:
            push(node, "auth", 5)
            wait_for(lambda: len(loki.capture.lines()) == 5, 20, what="lines forwarded")
            auth = loki.capture.requests[-1]["authorization"]
            assert auth == "Basic " + base64.b64encode(b"urluser:urlsecret").decode()
            assert logs_status(node)["healthy"] is True
            metrics = node.get("/metrics").text
            assert "urlsecret" not in metrics and "cfgsecret" not in metrics
            assert "urlsecret" not in node.get("/api/status").text
        finally:
            node.stop()
        assert "urlsecret" not in node.log()


@pytest.mark.slow
def test_shutdown_stays_within_the_drain_deadline_while_loki_fails(tmp_path: Path) -> None:
    with LokiCapture() as loki:
        loki.capture.fail(503)
        extra = "drain_timeout: 2s"
        node = NodeProcess(tmp_path / "node", config(loki.url, client_extra=extra, search=True)).start()
        try:
            push(node, "stuck", 50)
            wait_for(lambda: loki.capture.failed >= 2, 20, what="Loki refusing")
            assert logs_status(node)["healthy"] is False
        finally:
            started = time.monotonic()
            code = node.stop(timeout=30)
            took = time.monotonic() - started
        assert code == 0 and took < 10, (code, took)
        assert "shutdown failed" not in node.log().lower()
        loki.capture.recover()  # what was not sent stays in the WAL: the next start sends it
        node.start()
        try:
            wait_for(lambda: len(loki.capture.lines()) == 50, 20, what="the backlog sent after a restart")
        finally:
            node.stop()


@pytest.mark.slow
def test_retry_after_is_honoured(tmp_path: Path) -> None:
    with LokiCapture() as loki:
        loki.capture.retry_after = "2"
        loki.capture.fail(429, 2)
        node = NodeProcess(tmp_path / "node", config(loki.url)).start()
        try:
            push(node, "later", 3)
            wait_for(lambda: len(loki.capture.lines()) == 3, 20, what="lines sent after the 429s")
            first, second = loki.capture.failure_times[:2]
            assert second - first >= 1.9  # backoff alone would retry after 50-100 ms
        finally:
            node.stop()
