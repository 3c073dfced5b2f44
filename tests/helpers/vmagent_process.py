"""A real vmagent (Debian's victoria-metrics 1.79) for tests: scrapes loopback targets and remote_writes
to the given URLs, each with its own queue on disk. Started on a free loopback port, stopped by PID."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.node_process import wait_for
from tests.helpers.peers import require
from tests.helpers.ports import free_port
from tests.helpers.processes import terminate


class VMAgent:
    def __init__(self, workdir: Path, scrape_configs: list[dict[str, object]], write_urls: list[str],
                 extra_args: tuple[str, ...] = ()) -> None:
        self.dir = workdir / f"vmagent-{free_port()}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_configs = scrape_configs
        self.write_urls = write_urls
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> VMAgent:
        config = self.dir / "scrape.yml"
        config.write_text(json.dumps({"scrape_configs": self.scrape_configs}))  # JSON is YAML
        args = [require("vmagent", "victoria-metrics"), f"-promscrape.config={config}",
                f"-remoteWrite.tmpDataPath={self.dir / 'queue'}", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-loggerLevel=WARN", *(f"-remoteWrite.url={u}" for u in self.write_urls), *self.extra_args]
        self._log = open(self.dir / "vmagent.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout, what="vmagent to answer /health")
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"vmagent exited with {self.proc.returncode}: {self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def log(self) -> str:
        path = self.dir / "vmagent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout)
        if getattr(self, "_log", None) is not None:
            self._log.close()
