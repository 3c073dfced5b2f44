"""Real node subprocesses (`python -m service ...`) on free loopback ports, stopped by PID."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.polling import wait_for
from tests.helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One HTTP request with the path sent exactly as given (raw escapes, `..` and all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class NodeProcess:
    """A node started as `python -m service -config.file=... -server.http.address=...`."""

    def __init__(self, workdir: Path, config_text: str, *, extra_args: list[str] | None = None,
                 port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(config_text)
        self.extra_args = extra_args or []
        self.port = port or free_port()
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> NodeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed on stop
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", f"-config.file={self.config_path}",
             f"-server.http.address=127.0.0.1:{self.port}", *self.extra_args],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        if wait_ready:
            try:
                self.wait_ready(timeout)
            except AssertionError:
                self.stop(signal.SIGKILL)  # a node that was late must not outlive the failed test
                raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            return self.get("/-/ready", timeout=2).status == 200

        try:
            wait_for(ready, timeout, what=f"node on port {self.port} to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- node log ---\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        return request(self.port, method, path, body, headers, timeout)

    def get(self, path: str, timeout: float = 10.0) -> Response:
        return self.request("GET", path, timeout=timeout)


def node_config(*, store: str = "embedded", etcd_endpoints: list[str] | None = None,
                prefix: str = "configurations/", allow_reading_files: bool = False,
                extra_metrics: str = "") -> str:
    lines = [
        "server:",
        "  log_level: info",
        "metrics:",
        "  wal_directory: data-agent",
        "  global:",
        "    scrape_interval: 15s",
        extra_metrics,
        "  scraping_service:",
        "    enabled: true",
        f"    dangerous_allow_reading_files: {'true' if allow_reading_files else 'false'}",
        "    kvstore:",
        f"      store: {store}",
        f"      prefix: {json.dumps(prefix)}",
    ]
    if etcd_endpoints:
        lines += ["      etcd:", f"        endpoints: {json.dumps(etcd_endpoints)}", "        dial_timeout: 2s"]
    return "\n".join(line for line in lines if line) + "\n"


def log_records(log: str, msg: str) -> list[dict[str, Any]]:
    """The JSON log records of a node's log text with this message, each with `at` (unix seconds)."""
    out = []
    for line in log.splitlines():
        if f'"{msg}"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        ts = datetime.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        record["at"] = ts.timestamp()
        out.append(record)
    return out
