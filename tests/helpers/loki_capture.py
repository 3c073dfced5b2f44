"""A stand-in for Loki: a real loopback HTTP server that decodes pushes and records every entry.

Accepts snappy-block protobuf (``logproto.PushRequest``) and JSON, undoing gzip/deflate first. Every
accepted entry is recorded with its label set, tenant (``X-Scope-OrgID``) and structured metadata. It can
be told to answer an error status for the next N requests or until told otherwise.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import snappy

from service.proto.push_pb2 import PushRequest


@dataclass(frozen=True)
class Entry:
    tenant: str
    labels: str
    ts_ns: int
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass
class Capture:
    entries: list[Entry] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)  # headers of accepted requests
    fail_status: int = 0
    fail_remaining: int = -1  # -1: fail every request while fail_status is set
    failed: int = 0
    retry_after: str = ""  # a Retry-After header sent with each failure
    failure_times: list[float] = field(default_factory=list)  # monotonic time of each failed request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int, count: int = -1) -> None:
        with self.lock:
            self.fail_status, self.fail_remaining = status, count

    def recover(self) -> None:
        self.fail(0)

    def lines(self) -> list[str]:
        with self.lock:
            return [e.line for e in self.entries]


def _decode(body: bytes, headers: dict[str, str]) -> PushRequest:
    enc = headers.get("content-encoding", "").lower()
    if enc == "gzip":
        body = gzip.decompress(body)
    elif enc == "deflate":
        body = zlib.decompress(body)
    if headers.get("content-type", "").startswith("application/json"):
        req = PushRequest()
        for s in json.loads(body)["streams"]:
            st = req.streams.add()
            st.labels = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(s["stream"].items())) + "}"
            for v in s["values"]:
                e = st.entries.add()
                e.timestamp.seconds, e.timestamp.nanos = divmod(int(v[0]), 10**9)
                e.line = v[1]
        return req
    return PushRequest.FromString(snappy.uncompress(body))


class LokiCapture:
    """``with LokiCapture() as loki: ... loki.url ... loki.capture.entries``"""

    def __init__(self) -> None:
        self.capture = Capture()
        capture = self.capture

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with capture.lock:
                    if capture.fail_status and capture.fail_remaining != 0:
                        capture.fail_remaining -= 1 if capture.fail_remaining > 0 else 0
                        capture.failed += 1
                        capture.failure_times.append(time.monotonic())
                        status = capture.fail_status
                        self.send_response(status)
                        if capture.retry_after:
                            self.send_header("Retry-After", capture.retry_after)
                        self.send_header("Content-Length", "5")
                        self.end_headers()
                        self.wfile.write(b"nope\n")
                        return
                try:
                    req = _decode(body, headers)
                except Exception as exc:  # report bad pushes as Loki does
                    msg = str(exc).encode()
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                tenant = headers.get("x-scope-orgid", "")
                with capture.lock:
                    capture.requests.append(headers)
                    for s in req.streams:
                        for e in s.entries:
                            capture.entries.append(Entry(
                                tenant, s.labels, e.timestamp.seconds * 10**9 + e.timestamp.nanos, e.line,
                                tuple((p.name, p.value) for p in e.structuredMetadata)))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/loki/api/v1/push"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LokiCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
