"""TLS and credentials on the node's own HTTP server, with real certificates on loopback."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from pathlib import Path

import pytest

from tests.helpers.certs import make_certs
from tests.helpers.node_process import NodeProcess, node_config, wait_for
from tests.helpers.ports import free_port

CONFIG = "/agent/api/v1/config/"


def tls_node(tmp_path: Path, certs: dict[str, Path], client_auth: str = "NoClientCert") -> NodeProcess:
    tls = (f"  http_tls_config:\n    cert_file: {certs['server.crt']}\n    key_file: {certs['server.key']}\n"
           f"    client_ca_file: {certs['ca.crt']}\n    client_auth_type: {client_auth}\n")
    text = node_config(store="embedded").replace("server:\n", "server:\n" + tls, 1)
    return NodeProcess(tmp_path / "node", text)


def https_get(port: int, path: str, ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def plain_http_status(port: int, path: str) -> int | None:
    """The status of a plain-HTTP GET, or None when the connection fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def push_listener(tmp_path: Path, port: int, cert: Path, key: Path) -> str:
    """A node-file `logs` block: one instance with a loki_push_api listener serving TLS on `port`."""
    return f"""logs:
  positions_directory: {tmp_path / "positions"}
  configs:
  - name: default
    clients: []
    scrape_configs:
    - job_name: api
      loki_push_api:
        server:
          http_listen_address: 127.0.0.1
          http_listen_port: {port}
          http_tls_config: {{cert_file: {cert}, key_file: {key}}}
"""


def client_context(certs: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca.crt"]))
    if with_cert:
        ctx.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))
    return ctx


def test_tls_serves_https_only(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    node = tls_node(tmp_path, certs).start(wait_ready=False)
    try:
        ctx = client_context(certs, with_cert=False)
        wait_for(lambda: https_get(node.port, "/-/ready", ctx) == 200, 60, what="https readiness")
        assert https_get(node.port, "/agent/api/v1/configs", ctx) == 200
        assert plain_http_status(node.port, "/-/ready") != 200  # refused or answered with an error
    finally:
        node.stop()


def test_tls_can_require_client_certificates(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    node = tls_node(tmp_path, certs, client_auth="RequireAndVerifyClientCert").start(wait_ready=False)
    try:
        with_cert = client_context(certs, with_cert=True)
        wait_for(lambda: https_get(node.port, "/-/healthy", with_cert) == 200, 60, what="https with a client cert")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            https_get(node.port, "/-/healthy", client_context(certs, with_cert=False))
    finally:
        node.stop()


def test_bad_certificate_paths_fail_startup_clearly(tmp_path: Path) -> None:
    certs = {"server.crt": tmp_path / "nope.crt", "server.key": tmp_path / "nope.key", "ca.crt": tmp_path / "ca"}
    node = tls_node(tmp_path, certs)
    node.start(wait_ready=False)
    assert node.proc is not None and node.proc.wait(20) == 1
    assert "cannot load the TLS certificate" in node.log()


AUTH = """  http_auth:
    bearer_tokens: [token-one]
    bearer_token_file: {token_file}
    basic_auth_users: {{admin: s3cret}}
"""


def test_credentials_are_required_except_for_probes(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("token-two\n")
    text = node_config(store="embedded").replace("server:\n", "server:\n" + AUTH.format(token_file=token_file), 1)
    node = NodeProcess(tmp_path / "node", text).start()
    body = "scrape_configs: []\n"
    try:
        assert node.get("/-/ready").status == 200 and node.get("/-/healthy").status == 200
        assert node.get("/metrics").status == 200
        denied = node.request("PUT", CONFIG + "a", body)
        assert denied.status == 401
        assert denied.json() == {"status": "error", "data": {"error": "authentication required"}}
        assert denied.headers["www-authenticate"].startswith("Basic")
        assert node.request("PUT", CONFIG + "a", body, {"Authorization": "Bearer wrong"}).status == 401
        write = node.request("POST", "/agent/api/v1/metrics/instance/x/write", b"")
        assert write.status == 401
        assert node.request("POST", "/loki/api/v1/push", b"{}", {"Content-Type": "application/json"}).status == 401
        assert node.request("PUT", CONFIG + "a", body, {"Authorization": "Bearer token-one"}).status == 201
        assert node.request("PUT", CONFIG + "a", body, {"Authorization": "Bearer token-two"}).status == 200
        basic = base64.b64encode(b"admin:s3cret").decode()
        assert node.request("DELETE", CONFIG + "a", headers={"Authorization": f"Basic {basic}"}).status == 200
        wrong = base64.b64encode(b"admin:nope").decode()
        assert node.request("GET", "/agent/api/v1/configs", headers={"Authorization": f"Basic {wrong}"}).status == 401
        assert "token-one" not in node.get("/-/config").text  # /-/config itself needs credentials
        shown = node.request("GET", "/-/config", headers={"Authorization": "Bearer token-one"}).text
        assert "token-one" not in shown and "s3cret" not in shown and "<secret>" in shown
    finally:
        node.stop()


def test_loki_push_api_listener_serves_tls_and_requires_credentials(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    push_port = free_port()
    logs = push_listener(tmp_path, push_port, certs["server.crt"], certs["server.key"])
    auth = "  http_auth:\n    bearer_tokens: [token-one]\n"
    text = node_config(store="embedded").replace("server:\n", "server:\n" + auth, 1) + logs
    node = NodeProcess(tmp_path / "node", text).start()
    ctx = client_context(certs, with_cert=False)
    line = '{"streams": [{"stream": {"app": "x"}, "values": [["1700000000000000000", "hello"]]}]}'

    def push(token: str | None) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", push_port, context=ctx, timeout=5)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            conn.request("POST", "/loki/api/v1/push", line, headers)
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        assert https_get(push_port, "/ready", ctx) == 200  # the probe stays open
        assert push(None) == 401 and push("wrong") == 401
        assert push("token-one") == 204
        assert plain_http_status(push_port, "/ready") != 200
    finally:
        node.stop()


def test_loki_push_api_bad_certificate_is_a_clear_error(tmp_path: Path) -> None:
    logs = push_listener(tmp_path, free_port(), tmp_path / "nope.crt", tmp_path / "nope.key")
    node = NodeProcess(tmp_path / "node", node_config(store="embedded") + logs)
    node.start(wait_ready=False)
    assert node.proc is not None and node.proc.wait(20) == 1
    assert "node failed to start" in node.log() and "loki_push_api api: cannot load the TLS certificate" in node.log()


MALFORMED_AUTH = [
    "Basic \xe9".encode("latin-1"),  # the é of the report, as one byte
    "Basic é".encode(),  # ... and as UTF-8
    b"Basic", b"Basic ", b"Basic !!!!", b"Basic ====", b"Basic /w==",  # not base64, or not UTF-8 inside
    b"Basic " + base64.b64encode(b"\xff\xfe:\xff"), b"Basic " + base64.b64encode(b"no-colon"),
    b"Bearer", b"Bearer \xe9\xff", b"Digest username=admin", b"\xe9", b"basic\tYWRtaW46czNjcmV0",
]


def raw_status(port: int, header: bytes) -> int:
    """The status of a GET whose Authorization header carries exactly these bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /agent/api/v1/configs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: " + header + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.slow
def test_malformed_authorization_headers_are_401(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("token-two\n")
    text = node_config(store="embedded").replace("server:\n", "server:\n" + AUTH.format(token_file=token_file), 1)
    node = NodeProcess(tmp_path / "node", text).start()
    try:
        statuses = {header: raw_status(node.port, header) for header in MALFORMED_AUTH}
        assert statuses == dict.fromkeys(MALFORMED_AUTH, 401)
        good = b"Basic " + base64.b64encode(b"admin:s3cret")
        assert raw_status(node.port, good) == 200
        assert "Traceback" not in node.log()
    finally:
        node.stop()


@pytest.mark.parametrize("header", [h.decode("latin-1") for h in MALFORMED_AUTH])
def test_authorized_refuses_malformed_headers(header: str) -> None:
    from service.config.schema import Secret
    from service.http.auth import HTTPAuthConfig, authorized

    cfg = HTTPAuthConfig(bearer_tokens=[Secret("t")], basic_auth_users={"admin": Secret("s3cret")})
    assert authorized(cfg, header) is False
