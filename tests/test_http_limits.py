"""Limits of the node's HTTP port against a real node on loopback, driven with raw sockets and Python's own
HTTP clients: header size (431), header read timeout, connection limit (503), and answers given before a
request body has fully arrived (413) that clients can read instead of a connection reset."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from service.http.limits import effective_conn_limit
from tests.helpers.node_process import NodeProcess, node_config, wait_for
from tests.helpers.ports import free_port

CONN_LIMIT = 40
HEADER_TIMEOUT = 3.0
LIMITS = (f"  http_listen_conn_limit: {CONN_LIMIT}\n"
          f"  http_server_read_header_timeout: {HEADER_TIMEOUT}s\n")
PUSH_LIMIT = 1 << 20


def logs_block(push_port: int) -> str:
    return f"""logs:
  positions_directory: positions
  configs:
  - name: default
    clients: []
    scrape_configs:
    - job_name: api
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {push_port},
                  grpc_server_max_recv_msg_size: {PUSH_LIMIT}}}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    push_port = free_port()
    text = node_config(store="embedded").replace("server:\n", "server:\n" + LIMITS, 1) + logs_block(push_port)
    n = NodeProcess(tmp_path_factory.mktemp("limits") / "node", text).start()
    n.push_port = push_port  # type: ignore[attr-defined]
    try:
        assert n.request("PUT", "/agent/api/v1/config/inst", "scrape_configs: []\n").status == 201
        wait_for(lambda: n.request("POST", "/agent/api/v1/metrics/instance/inst/write", b"").status != 400, 20,
                 what="instance inst running")
        yield n
    finally:
        n.stop()


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset after the answer ends it too)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def status_of(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_oversize_header_is_431_and_the_node_serves_others(node: NodeProcess) -> None:
    big = b"a" * (16 << 20)  # 16 MiB: the default limit is 1 MiB
    sock = socket.create_connection(("127.0.0.1", node.port))
    try:
        sender = threading.Thread(target=lambda: _send_quietly(sock, b"GET /-/ready HTTP/1.1\r\nHost: x\r\n"
                                                               b"X-Big: " + big + b"\r\n\r\n"))
        sender.start()
        assert node.get("/-/healthy").status == 200  # served meanwhile
        raw = read_response(sock)
        sender.join(10)
    finally:
        sock.close()
    assert status_of(raw) == 431, raw[:200]
    assert b"request header fields too large" in raw
    # just under the limit is served
    fine = node.request("GET", "/-/ready", headers={"X-Fine": "b" * (1 << 19)})
    assert fine.status == 200


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may close once it has answered and read its bound
        sock.sendall(data)


@pytest.mark.slow
def test_slow_loris_is_closed_after_the_header_timeout(node: NodeProcess) -> None:
    silent = socket.create_connection(("127.0.0.1", node.port))
    slow = socket.create_connection(("127.0.0.1", node.port))
    start = time.monotonic()
    closed_at: float | None = None
    try:
        slow.sendall(b"GET /-/ready HTTP/1.1\r\n")
        slow.settimeout(0.2)
        for i in range(100):  # one header byte every 0.2 s: never a complete head
            try:
                slow.sendall(b"X-Slow: " if i == 0 else b"x")
                if slow.recv(1) == b"":
                    closed_at = time.monotonic()
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "a slow-loris connection stayed open"
        assert HEADER_TIMEOUT * 0.8 <= closed_at - start <= HEADER_TIMEOUT + 8  # + slack for a loaded machine
        assert read_response(silent, timeout=HEADER_TIMEOUT + 3) == b""  # one that never sent a byte, too
    finally:
        silent.close()
        slow.close()
    assert node.get("/-/ready").status == 200


def test_a_request_sent_in_time_is_answered_after_the_node_stalled(node: NodeProcess) -> None:
    """A node whose event loop stalls past the header timeout (here: SIGSTOP, as a starved CI machine or a
    long GC pause does) still answers a request whose head arrived in time. uvloop runs due timers before it
    reads the sockets, so the timeout used to close such a connection unanswered (RemoteDisconnected)."""
    conn = socket.create_connection(("127.0.0.1", node.port))
    try:
        # the connection is accepted at once by an idle node; the pause below is the point of the test
        time.sleep(0.3)
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            conn.sendall(b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(HEADER_TIMEOUT + 1)  # stalled past the timeout with the whole head in its socket
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        answer = read_response(conn, timeout=15)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        conn.close()


@pytest.mark.slow
def test_connection_limit_answers_503_without_exhausting_descriptors(node: NodeProcess) -> None:
    before = open_fds(node.pid)
    held: list[socket.socket] = []
    statuses: list[int | None] = []
    try:
        for _ in range(CONN_LIMIT + 60):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
            held.append(sock)
        # the first CONN_LIMIT are open and silent (until the header timeout); past them, a request is
        # answered 503 and the connection closed
        full = read_response_of_request(node.port)
        assert status_of(full) == 503 and b"retry-after: 1" in full.lower(), full
        over = held[CONN_LIMIT + 5:]
        for sock in over:
            statuses.append(status_of(read_response(sock, timeout=10)))
        assert statuses.count(503) >= len(over) * 0.9, statuses
        assert open_fds(node.pid) <= before + CONN_LIMIT + 10
    finally:
        for sock in held:
            sock.close()
    # the silent ones are closed by the header timeout (or by the client): normal clients get through again
    wait_for(lambda: node.get("/-/ready").status == 200, HEADER_TIMEOUT + 10, what="normal service again")
    wait_for(lambda: open_fds(node.pid) <= before + 5, HEADER_TIMEOUT + 10, what="descriptors released")


def read_response_of_request(port: int) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        _send_quietly(sock, b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        return read_response(sock, timeout=5)
    finally:
        sock.close()


# --- answers before the body is in: clients read the 413, never a reset -----------------------------------

OVERSIZED = [
    ("PUT", "/agent/api/v1/config/big", 12 << 20, "main"),  # config API limit: 4 MiB
    ("POST", "/agent/api/v1/metrics/instance/inst/write", 40 << 20, "main"),
    ("POST", "/loki/api/v1/push", 12 << 20, "push"),  # the loki_push_api listener's limit: 1 MiB
]


def _port(node: NodeProcess, where: str) -> int:
    return node.port if where == "main" else node.push_port  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "size", "where"), OVERSIZED)
def test_urllib_reads_413_for_an_oversized_body(node: NodeProcess, method: str, path: str, size: int,
                                                where: str) -> None:
    """urllib sends `Connection: close` and the whole body before it reads the answer."""
    req = urllib.request.Request(f"http://127.0.0.1:{_port(node, where)}{path}", data=b"\0" * size,
                                 method=method, headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 413
    assert b"too large" in info.value.read()


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "size", "where"), OVERSIZED)
def test_http_client_reads_413_and_keeps_its_connection(node: NodeProcess, method: str, path: str, size: int,
                                                        where: str) -> None:
    """http.client keeps the connection alive: the rest of the body is read and dropped, then the same
    connection serves the next request."""
    conn = http.client.HTTPConnection("127.0.0.1", _port(node, where), timeout=30)
    try:
        conn.request(method, path, body=b"\0" * size, headers={"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert b"too large" in resp.read()
        conn.request("GET", "/ready" if where == "push" else "/-/ready")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.mark.slow
def test_chunked_oversized_body_is_413_too(node: NodeProcess) -> None:
    """No Content-Length: the limit is found while reading, and the rest is still drained."""
    def chunks() -> Iterator[bytes]:
        for _ in range(12 * 16):
            yield b"\0" * (64 << 10)

    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        conn.request("PUT", "/agent/api/v1/config/chunked", body=chunks(), encode_chunked=True,
                     headers={"Connection": "close"})
        resp = conn.getresponse()
        assert resp.status == 413
    finally:
        conn.close()


def test_effective_conn_limit_stays_below_the_open_files_limit() -> None:
    assert effective_conn_limit(1024, 1 << 20) == 1024
    assert effective_conn_limit(100_000, 4096) < 4096
    assert 0 < effective_conn_limit(0, 1024) < 1024


def test_limit_settings_are_checked() -> None:
    from service.config.errors import ConfigError
    from service.settings import parse_node_config

    cfg = parse_node_config("server: {}\n")
    assert (cfg.server.http_listen_conn_limit, cfg.server.http_server_max_header_bytes) == (1024, 1 << 20)
    assert float(cfg.server.http_server_read_header_timeout) == 10
    with pytest.raises(ConfigError):
        parse_node_config("server: {http_server_max_header_bytes: 100}\n")
    with pytest.raises(ConfigError):
        parse_node_config("server: {http_listen_conn_limit: -1}\n")


@pytest.mark.slow
def test_header_timeout_applies_per_request_on_kept_alive_connections(node: NodeProcess) -> None:
    """Requests spaced close to the timeout on one connection are served; a slow head after a fast request
    is closed in its turn."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/-/ready")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read()
            time.sleep(HEADER_TIMEOUT * 0.7)  # below uvicorn's 5 s keep-alive, near the header timeout
        conn.request("GET", "/-/healthy")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
        sock = conn.sock
        assert sock is not None
        sock.sendall(b"GET /-/ready HTTP/1.1\r\nX-Slow: ")  # then nothing more
        start = time.monotonic()
        assert read_response(sock, timeout=HEADER_TIMEOUT + 8) == b""
        assert time.monotonic() - start <= HEADER_TIMEOUT + 8
    finally:
        conn.close()
