"""A real single-node etcd for tests: in a container when a Docker engine answers, else the local binary.

The server keeps its client/peer ports and data directory across stop()/start(), so a test can take etcd
away and bring it back with its data intact.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.ports import free_port
from tests.helpers.processes import terminate

ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"


def _die_with_parent() -> None:
    """In the child: have Linux SIGKILL it if the test process dies without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # any failure means "no usable engine"
        return False
    return True


class EtcdServer:
    """One etcd member on 127.0.0.1. `extra_args` are appended to the command line (e.g. TLS flags);
    `scheme` is "https" when those flags make the client port speak TLS."""

    def __init__(self, data_dir: Path, *, extra_args: list[str] | None = None, scheme: str = "http",
                 use_docker: bool | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra_args = list(extra_args or [])
        self.scheme = scheme
        self.use_docker = docker_available() if use_docker is None else use_docker
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._container: object | None = None  # testcontainers DockerContainer
        self._log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not self.use_docker and shutil.which("etcd") is None:
            raise RuntimeError("no Docker engine answers and no `etcd` binary on PATH: "
                               "run tests/install-deps.sh (installs Debian's etcd-server)")

    @property
    def endpoint(self) -> str:
        """host:port of the client listener."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _args(self, data_dir: str, host: str) -> list[str]:
        client = f"{self.scheme}://{host}:{self.client_port}"
        peer = f"http://{host}:{self.peer_port}"
        return [
            "--name", "test", "--data-dir", data_dir,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}", "--initial-cluster-state", "new",
            # a lone member need not wait a second to elect itself; also lowers the minimum lease TTL to 1 s
            "--heartbeat-interval", "50", "--election-timeout", "250",
            *self.extra_args,
        ]

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        if self._started_once or self.use_docker:
            self._start(timeout)
            return
        for attempt in range(3):
            try:
                self._start(timeout)
                break
            except RuntimeError:
                # A free port can be taken by another process between our probe and etcd's bind: on a
                # first start (no data worth keeping yet) take fresh ports and a clean data directory.
                if attempt == 2:
                    raise
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.client_port, self.peer_port = free_port(), free_port()
        self._started_once = True

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.use_docker:
            self._start_container()
        else:
            with open(self._log_path, "ab") as log:
                argv = ["etcd", *self._args(str(self.data_dir), "127.0.0.1")]
                if shutil.which("setpriv"):
                    # No preexec_fn: with one, Python forks instead of vforking, and gRPC's fork handlers (a
                    # test's etcd client is live in this process) aborted the child once (etcd "exited with -6").
                    self._proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", *argv], stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
                else:
                    self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True, preexec_fn=_die_with_parent)
        self.wait_healthy(timeout)

    def _start_container(self) -> None:
        if self._container is not None:  # restart the same container: same ports, same data volume
            self._container.get_wrapped_container().start()  # type: ignore[attr-defined]
            return
        from testcontainers.core.container import DockerContainer

        container = (DockerContainer(ETCD_IMAGE)
                     .with_bind_ports(self.client_port, self.client_port)
                     .with_bind_ports(self.peer_port, self.peer_port)
                     .with_volume_mapping(str(self.data_dir), "/etcd-data", "rw"))
        # listen on all interfaces inside the container, advertise the host's loopback
        cmd = ["etcd", *self._args("/etcd-data", "0.0.0.0")]
        for flag in ("--advertise-client-urls", "--initial-advertise-peer-urls", "--initial-cluster"):
            i = cmd.index(flag) + 1
            cmd[i] = cmd[i].replace("0.0.0.0", "127.0.0.1")
        container.with_command(cmd)
        container.start()
        self._container = container

    @property
    def running(self) -> bool:
        if self.use_docker:
            if self._container is None:
                return False
            wrapped = self._container.get_wrapped_container()  # type: ignore[attr-defined]
            wrapped.reload()
            return bool(wrapped.status == "running")
        return self._proc is not None and self._proc.poll() is None

    def healthy(self) -> bool:
        """etcd's /health answers {"health":"true"} once it has a leader."""
        if self.scheme != "http":
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.5):
                    return True
            except OSError:
                return False
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not self.use_docker and self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self._proc.returncode}; log: {self._log_path}")
            time.sleep(0.05)
        raise TimeoutError(f"etcd on {self.endpoint} not healthy after {timeout}s; log: {self._log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; the data directory stays for a later start()."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().stop(timeout=int(timeout))  # type: ignore[attr-defined]
            return
        proc, self._proc = self._proc, None
        terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once (a crash, not a shutdown)."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().kill()  # type: ignore[attr-defined]
            return
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def remove(self) -> None:
        """Stop for good (and drop the container)."""
        self.stop()
        if self._container is not None:
            self._container.stop()  # type: ignore[attr-defined]
            self._container = None
