"""The command line: Grafana Agent static-mode flags, clear errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.node_process import REPO, NodeProcess, free_port, node_config


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    result = run_cli(f"-config.file={tmp_path}/absent.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.yaml" in result.stderr and "No such file" in result.stderr


def test_invalid_config_file_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("metrics:\n  unknown_key: 1\n")
    result = run_cli("-config.file", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "field unknown_key not found" in result.stderr


def test_missing_flag_exits_nonzero(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode != 0
    assert "config.file" in result.stderr


def test_expand_env_flag_and_address(tmp_path: Path) -> None:
    port = free_port()
    text = node_config(store="embedded").replace(
        "log_level: info", "log_level: info\n  log_format: ${SCRAPING_SERVICE_TEST_FORMAT:-json}")
    node = NodeProcess(tmp_path, text, extra_args=["-config.expand-env"], port=port)
    node.start()
    try:
        assert node.get("/-/healthy").status == 200
        assert '"component":"server"' in node.log()  # JSON lines: the default from the expanded variable
    finally:
        node.stop()


def test_two_dash_flags_work_too(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(node_config(store="embedded"))
    result = run_cli("config-check", str(tmp_path / "agent.yaml"), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "config valid")
    (tmp_path / "bad.yaml").write_text("server:\n  log_format: xml\n")
    result = run_cli("config-check", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert result.returncode == 1 and 'unrecognized log format "xml"' in result.stderr


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, node_config(store="embedded")).start()
    assert node.stop() == 0
    assert "node stopped" in node.log()
