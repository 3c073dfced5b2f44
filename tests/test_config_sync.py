"""`scraping-service config-sync` against a real node."""

from __future__ import annotations

from pathlib import Path

from tests.node_process import NodeProcess, node_config
from tests.ports import free_port
from tests.test_cli import run_cli

CONFIGS = "/agent/api/v1/configs"


def body(job: str) -> str:
    return f"scrape_configs:\n- job_name: {job}\n  static_configs: [{{targets: ['127.0.0.1:9']}}]\n"


def names(node: NodeProcess) -> list[str]:
    return node.get(CONFIGS).json()["data"]["configs"]


def test_config_sync(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_config(store="embedded")).start()
    local = tmp_path / "configs"
    local.mkdir()
    (local / "alpha.yaml").write_text(body("a"))
    (local / "beta gamma.yml").write_text(body("b"))
    (local / "notes.txt").write_text("not a config")
    (local / "sub").mkdir()
    (local / "sub" / "nested.yaml").write_text(body("n"))
    addr = f"http://127.0.0.1:{node.port}"
    try:
        assert node.request("PUT", "/agent/api/v1/config/remote-only", body("r")).status == 201

        dry = run_cli("config-sync", "--dry-run", "-a", addr, str(local), cwd=tmp_path)
        assert dry.returncode == 0 and "validated successfully" in dry.stdout
        assert names(node) == ["remote-only"]

        result = run_cli("config-sync", "--addr", addr, str(local), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "created config alpha" in result.stdout and "deleted config remote-only" in result.stdout
        assert "2 created, 0 updated, 1 deleted, 0 failed" in result.stdout
        assert names(node) == ["alpha", "beta gamma"]

        (local / "alpha.yaml").write_text(body("a2"))
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 0 and "0 created, 2 updated, 0 deleted" in result.stdout
        assert "job_name: a2" in node.get(f"{CONFIGS}/alpha").json()["data"]["value"]

        # One bad file aborts before any change.
        (local / "broken.yaml").write_text("scrape_configs: [\n")
        (local / "zeta.yaml").write_text(body("z"))
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 1 and "broken.yaml" in result.stderr
        assert names(node) == ["alpha", "beta gamma"]
        (local / "broken.yaml").unlink()

        # A config the node rejects (job name clash) is reported and the exit code says so.
        (local / "zeta.yaml").write_text(body("a2"))
        result = run_cli("config-sync", "-a", addr, str(local), cwd=tmp_path)
        assert result.returncode == 1
        assert "failed to upload config zeta" in result.stdout and "one or more configurations failed" in result.stderr
    finally:
        node.stop()


def test_config_sync_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(body("a"))
    result = run_cli("config-sync", "-a", f"http://127.0.0.1:{free_port()}", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "cannot reach" in result.stderr
    result = run_cli("config-sync", "-a", "", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "--addr must not be empty" in result.stderr
    result = run_cli("config-sync", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 1 and "cannot read directory" in result.stderr
