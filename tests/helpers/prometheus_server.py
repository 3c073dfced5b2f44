"""A real Prometheus 2.42 process for tests: remote_write receiver (or sender, with a given config).

``PrometheusServer(tmp, receiver=True)`` (or ``agent=True``: agent mode, scraping and remote_writing)
picks a free loopback port, starts the binary, waits for ``/-/ready`` and is stopped by its PID.
``query`` and ``series`` call the HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.peers import require
from tests.helpers.ports import free_port
from tests.helpers.processes import terminate

BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"
_EMPTY_CONFIG = "global: {scrape_interval: 15s}\nscrape_configs: []\n"


def available() -> bool:
    """Whether the binary is installed. Tests do not skip on this: they call require_prometheus() (or start
    a server), which fails when it is missing (tests/helpers/peers.py)."""
    return os.access(BINARY, os.X_OK)


def require_prometheus() -> str:
    """The binary's path; fails (tests/helpers/peers.py) when Debian's prometheus is not installed."""
    return require(BINARY, "prometheus")


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its own data directory under ``tmp``."""

    def __init__(self, tmp: str | os.PathLike[str], *, receiver: bool = True, config: str | None = None,
                 extra_args: tuple[str, ...] = (), agent: bool = False) -> None:
        self.dir = Path(tmp) / f"prometheus-{free_port()}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_url = f"{self.url}/api/v1/write"
        self.receiver = receiver
        self.agent = agent
        self.config = config if config is not None else _EMPTY_CONFIG
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        config_path = self.dir / "prometheus.yml"
        config_path.write_text(self.config)
        storage = ([f"--storage.agent.path={self.dir / 'agent'}", "--enable-feature=agent"] if self.agent
                   else [f"--storage.tsdb.path={self.dir / 'data'}"])
        args = [require_prometheus(), f"--config.file={config_path}", *storage,
                f"--web.listen-address=127.0.0.1:{self.port}", *self.extra_args]
        if self.receiver:
            args.append("--web.enable-remote-write-receiver")
        self._log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, size: int = 2000) -> str:
        try:
            return (self.dir / "prometheus.log").read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` (raises on an error answer)."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API error: {body}")
        return body["data"]

    def query(self, expr: str, time_s: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list."""
        params: dict[str, Any] = {"query": expr}
        if time_s is not None:
            params["time"] = time_s
        return self.api("query", **params)["result"]

    def series(self, match: str, start: float | None = None, end: float | None = None) -> list[dict[str, str]]:
        params: dict[str, Any] = {"match[]": match}
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        return self.api("series", **params)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        terminate(proc, timeout)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Samples = dict[tuple[tuple[str, str], ...], list[tuple[float, str]]]


def raw_samples(prom: PrometheusServer, at: float, window_s: int, drop: str = "") -> Samples:
    """Every raw sample in (at - window_s, at], by label set (without the label ``drop``)."""
    result = prom.api("query", query=f'{{__name__=~".+"}}[{window_s}s]', time=at)
    assert result["resultType"] == "matrix"
    out: Samples = {}
    for series in result["result"]:
        key = tuple(sorted((k, v) for k, v in series["metric"].items() if k != drop))
        out[key] = [(float(t), v) for t, v in series["values"]]
    return out


def describe_diff(want: Samples, got: Samples) -> str:
    missing = [dict(k) for k in want.keys() - got.keys()]
    extra = [dict(k) for k in got.keys() - want.keys()]
    differing = [dict(k) for k in want.keys() & got.keys() if want[k] != got[k]]
    return (f"{len(missing)} series missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}), "
            f"{len(differing)} with other samples (e.g. {differing[:3]})")
