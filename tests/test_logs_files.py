"""File tailing through a real node: tailed lines reach Loki, targets show offsets, restarts resume."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.logs_node import logs_node_yaml
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, wait_for


def node_yaml(loki_url: str, log_dir: Path) -> str:
    return logs_node_yaml(name="files", loki_url=loki_url, instance_extra="""
positions: {sync_period: 100ms}
target_config: {sync_period: 200ms}
""", scrape_configs=f"""
- job_name: varlogs
  static_configs:
  - targets: [localhost]
    labels:
      job: varlogs
      __path__: {log_dir}/*.log
  pipeline_stages:
  - regex: {{expression: '^(?P<level>\\w+) (?P<msg>.*)$'}}
  - labels: {{level: ""}}
  - output: {{source: msg}}
""")


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


def test_tailed_lines_reach_loki_through_the_pipeline(tmp_path: Path, loki: LokiCapture) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    append(log_dir / "app.log", ["info started", "error failed to bind"])
    node = NodeProcess(tmp_path / "node", node_yaml(loki.url, log_dir)).start()
    try:
        wait_for(lambda: {"started", "failed to bind"} <= set(loki.capture.lines()), 10, what="tailed lines")
        error = next(e for e in loki.capture.entries if e.line == "failed to bind")
        assert 'level="error"' in error.labels and 'job="varlogs"' in error.labels
        assert f'filename="{log_dir}/app.log"' in error.labels

        append(log_dir / "new.log", ["warn picked up"])  # a new file matching the glob
        wait_for(lambda: "picked up" in loki.capture.lines(), 10, what="a new file's line")

        targets = node.get("/agent/api/v1/logs/targets").json()["data"]
        assert len(targets) == 1
        target = targets[0]
        assert (target["instance"], target["type"], target["target_group"]) == ("files", "File", "varlogs")
        size = (log_dir / "app.log").stat().st_size
        wait_for(lambda: node.get("/agent/api/v1/logs/targets").json()["data"][0]["details"]
                 .get(str(log_dir / "app.log")) == size, 10, what="offset of app.log")
        assert node.get("/agent/api/v1/logs/instances").json()["data"] == ["files"]
    finally:
        node.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restart_resumes_at_saved_offsets(tmp_path: Path, loki: LokiCapture, sig: int) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    path = log_dir / "app.log"
    node = NodeProcess(tmp_path / "node", node_yaml(loki.url, log_dir)).start()
    try:
        append(path, [f"info before-{i}" for i in range(50)])
        wait_for(lambda: sum(line.startswith("before-") for line in loki.capture.lines()) == 50, 10,
                 what="lines before the restart")
        node.stop(sig)
        append(path, [f"info during-{i}" for i in range(50)])
        node.start()
        append(path, [f"info after-{i}" for i in range(50)])
        wait_for(lambda: sum(line.startswith("after-") for line in loki.capture.lines()) == 50, 15,
                 what="lines after the restart")
        counts = Counter(loki.capture.lines())
        lost = [f"{kind}-{i}" for kind in ("before", "during", "after") for i in range(50)
                if counts[f"{kind}-{i}"] == 0]
        assert not lost
        duplicated = [line for line, n in counts.items() if n > 1]
        if sig == signal.SIGTERM:
            assert not duplicated  # positions are saved on a clean stop
        else:
            # kill -9 can repeat what was read after the last positions save (every 100 ms here)
            assert len(duplicated) <= 50
    finally:
        node.stop()
