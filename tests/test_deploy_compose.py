"""Compose file (checked by the real docker compose v2 binary, no engine needed) and the Dockerfile.

The Dockerfile cannot be built here (no Docker engine); its CMD is parsed by the node's own CLI parser and its
HEALTHCHECK one-liner is run against a real node.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.cli import _run_parser
from service.settings import parse_node_config
from tests.helpers import deploy_tools
from tests.helpers.node_process import NodeProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> Path:
    return deploy_tools.docker_compose()


def compose_run(binary: Path, file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real binary's exit status (its Python console wrapper always exits 0)."""
    return subprocess.run([str(binary), "-f", str(file), *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=file.parent)


def model(binary: Path, *profiles: str) -> dict[str, Any]:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    proc = compose_run(binary, COMPOSE_DIR / "compose.yaml", *flags, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_is_valid(compose: Path) -> None:
    proc = compose_run(compose, COMPOSE_DIR / "compose.yaml", "config", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    restart: unless-stopped\n\n  node-1:", "    restartt: unless-stopped\n\n  node-1:",
     "additional properties 'restartt' not allowed"),
    ('    ports: ["127.0.0.1:12345:12345"]', "    ports: 12345", "ports must be a array"),
])
def test_broken_compose_copy_fails(compose: Path, tmp_path: Path, old: str, new: str, message: str) -> None:
    copy = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, copy)
    text = (copy / "compose.yaml").read_text()
    assert old in text
    (copy / "compose.yaml").write_text(text.replace(old, new, 1))
    proc = compose_run(compose, copy / "compose.yaml", "config", "--quiet")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_compose_model(compose: Path) -> None:
    services = model(compose)["services"]
    assert sorted(services) == ["etcd", "node-1", "node-2", "node-3", "prometheus"]
    wal_volumes = set()
    for name in ("node-1", "node-2", "node-3"):
        node = services[name]
        assert node["build"]["context"] == str(ROOT)
        assert node["build"]["dockerfile"] == "Dockerfile"
        assert node["hostname"] == name and node["environment"]["HOSTNAME"] == name
        assert node["depends_on"]["etcd"]["condition"] == "service_healthy"
        assert "-config.expand-env" in node["command"]
        mounts = {v["target"]: v for v in node["volumes"]}
        assert mounts["/etc/agent/agent.yaml"]["source"] == str(COMPOSE_DIR / "agent.yaml")
        assert mounts["/etc/agent/agent.yaml"]["read_only"] is True
        assert mounts["/var/lib/agent/data"]["type"] == "volume"
        wal_volumes.add(mounts["/var/lib/agent/data"]["source"])
    assert len(wal_volumes) == 3
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
    with_grafana = model(compose, "grafana")["services"]
    assert "grafana" in with_grafana


def test_compose_agent_yaml_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "node-2")
    cfg = parse_node_config((COMPOSE_DIR / "agent.yaml").read_text(), expand=True)
    service = cfg.metrics.scraping_service
    assert service.enabled is True
    assert service.lifecycler.id == "node-2"
    for kv in (service.kvstore, service.lifecycler.ring.kvstore):
        assert kv.store == "etcd" and kv.etcd.endpoints == ["etcd:2379"]
    assert cfg.metrics.wal_directory == "/var/lib/agent/data"
    assert [str(rw.url) for rw in cfg.metrics.global_.remote_write] == ["http://prometheus:9090/api/v1/write"]


def dockerfile_instruction(name: str) -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{name} ")]
    return line[len(name) + 1:].strip()


def test_dockerfile_basics() -> None:
    assert dockerfile_instruction("FROM") == "python:3.11-slim"
    assert dockerfile_instruction("USER").split(":")[0] not in ("", "0", "root")
    assert json.loads(dockerfile_instruction("ENTRYPOINT")) == ["scraping-service"]
    assert "/var/lib/agent/data" in json.loads(dockerfile_instruction("VOLUME"))
    assert "pip install ." in dockerfile_instruction("RUN")
    args = _run_parser().parse_args(json.loads(dockerfile_instruction("CMD")))
    assert (args.config_file, args.http_address, args.expand_env) == (
        "/etc/agent/agent.yaml", "0.0.0.0:12345", True)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".venv" in ignored and ".git" in ignored


def test_image_default_config_parses() -> None:
    cfg = parse_node_config((ROOT / "deploy" / "docker" / "agent.yaml").read_text(), expand=True)
    assert cfg.metrics.scraping_service.enabled is True
    assert cfg.metrics.wal_directory == "/var/lib/agent/data"


def healthcheck_command(port: int) -> list[str]:
    cmd = json.loads(re.sub(r"^(--\S+\s+)*CMD\s+", "", dockerfile_instruction("HEALTHCHECK")))
    assert cmd[0] == "python"
    return [sys.executable, *[part.replace("127.0.0.1:12345", f"127.0.0.1:{port}") for part in cmd[1:]]]


def test_healthcheck_one_liner_against_a_real_node(tmp_path: Path) -> None:
    # The image's own file, with the WAL moved to a temp dir and the in-memory store (no disk state needed).
    config = (ROOT / "deploy" / "docker" / "agent.yaml").read_text()
    config = config.replace("/var/lib/agent/data", str(tmp_path / "data")).replace("store: embedded", "store: inmemory")
    assert "store: inmemory" in config
    node = NodeProcess(tmp_path / "node", config).start()
    try:
        ok = subprocess.run(healthcheck_command(node.port), capture_output=True, timeout=10, check=False)
        assert ok.returncode == 0, ok.stderr
    finally:
        node.stop()
    down = subprocess.run(healthcheck_command(free_port()), capture_output=True, timeout=10, check=False)
    assert down.returncode != 0
