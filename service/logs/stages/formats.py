"""Container log formats, built from other stages exactly as Promtail composes them: `docker` (JSON file
driver lines) and `cri` (containerd/CRI-O lines; partial-line reassembly is not done)."""

from __future__ import annotations

from typing import Any

from service.logs.stages.common import Record, Stage, options, register
from service.logs.stages.pipeline import compile_stages, run

_CRI = r"^(?s)(?P<time>\S+?) (?P<stream>stdout|stderr) (?P<flags>\S+?) (?P<content>.*)$"


def _composite(stages: list[Stage]) -> Stage:
    def composite(record: Record) -> bool:
        return run(stages, record)
    return composite


@register("docker")
def docker_stage(cfg: Any) -> Stage:
    options("docker", cfg, ())
    return _composite(compile_stages([
        {"json": {"expressions": {"output": "log", "stream": "stream", "timestamp": "time"}}},
        {"labels": {"stream": None}},
        {"timestamp": {"source": "timestamp", "format": "RFC3339Nano"}},
        {"output": {"source": "output"}},
    ]))


@register("cri")
def cri_stage(cfg: Any) -> Stage:
    options("cri", cfg, ())
    return _composite(compile_stages([
        {"regex": {"expression": _CRI}},
        {"labels": {"stream": None}},
        {"timestamp": {"source": "time", "format": "RFC3339Nano"}},
        {"output": {"source": "content"}},
    ]))
