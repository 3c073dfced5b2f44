"""Promtail's file target manager for one logs instance: turns `scrape_configs` (static_configs +
relabel_configs + pipeline_stages) into file targets, re-expands their globs every `sync_period`, and saves
the positions file on each sync and on stop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from service.config.errors import ConfigError
from service.config.schema import decode
from service.log import get_logger
from service.logs.entry import Sink
from service.logs.stages import Pipeline
from service.logs.tail.positions import Positions
from service.logs.tail.reader import DEFAULT_MAX_LINE_BYTES
from service.logs.tail.target import FileTarget
from service.relabel import RelabelConfig, Relabeler
from service.tasks import cancel_and_wait

log = get_logger("logs.tail")

PATH_LABEL = "__path__"
PATH_EXCLUDE_LABEL = "__path_exclude__"
HOST_LABEL = "__host__"
_UNSUPPORTED_SD = ("file_sd_configs", "kubernetes_sd_configs", "docker_sd_configs", "consul_sd_configs",
                   "consulagent_sd_configs", "journal", "syslog", "gcplog", "windows_events", "kafka",
                   "gelf", "cloudflare", "heroku_drain", "loki_push_api", "azure_event_hubs")


@dataclass
class Job:
    """One decoded scrape config."""

    name: str
    groups: list[tuple[list[str], dict[str, str]]]   # (targets, labels) of each static config
    relabeler: Relabeler
    pipeline: Pipeline

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Job:
        if not isinstance(cfg, Mapping):
            raise ConfigError("scrape config must be a mapping")
        name = cfg.get("job_name")
        if not name or not isinstance(name, str):
            raise ConfigError("scrape config is missing job_name")
        groups: list[tuple[list[str], dict[str, str]]] = []
        for sc in cfg.get("static_configs") or []:
            if not isinstance(sc, Mapping):
                raise ConfigError(f"job {name}: static_configs entries must be mappings")
            # Promtail needs a target only to satisfy service discovery; none means the local host.
            targets = [str(t) for t in sc.get("targets") or ["localhost"]]
            labels = {str(k): str(v) for k, v in (sc.get("labels") or {}).items()}
            groups.append((targets, labels))
        for key in _UNSUPPORTED_SD:
            if cfg.get(key):
                log.warning("scrape config section not supported, ignored", job=name, section=key)
        try:
            pipeline = Pipeline.from_config(cfg.get("pipeline_stages") or [])
        except ConfigError as exc:
            raise ConfigError(f"job {name}: {exc}") from None
        return cls(name, groups, Relabeler(_relabel_configs(cfg.get("relabel_configs"))), pipeline)


def _relabel_configs(raw: Any) -> list[RelabelConfig]:
    if not raw:
        return []
    if all(isinstance(r, RelabelConfig) for r in raw):
        return list(raw)
    node = yaml.compose(yaml.safe_dump(list(raw)))
    return decode(list[RelabelConfig], node)


class FileTargetManager:
    def __init__(self, job_configs: Sequence[Mapping[str, Any] | Job], positions: Positions, sink: Sink, *,
                 sync_period: float = 10.0, poll_min: float = 0.25, poll_max: float = 0.25,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.jobs = [j if isinstance(j, Job) else Job.from_config(j) for j in job_configs]
        names = [j.name for j in self.jobs]
        for n in names:
            if names.count(n) > 1:
                raise ConfigError(f"found multiple scrape configs with job name {n!r}")
        self.positions = positions
        self.sink = sink
        self.sync_period = sync_period
        self.reader_options = {"poll_min": poll_min, "poll_max": poll_max, "max_line_bytes": max_line_bytes}
        self.hostname = socket.gethostname()
        self._targets: list[FileTarget] = []
        self._dropped: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    def _build_targets(self) -> None:
        seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        for job in self.jobs:
            for targets, group_labels in job.groups:
                for address in targets:
                    discovered = {**group_labels, "__address__": address}
                    labels = job.relabeler.process(discovered)
                    if not labels:
                        self._dropped.append(discovered)
                        continue
                    if labels.get(HOST_LABEL, self.hostname) != self.hostname:
                        log.debug("ignoring target, wrong host", job=job.name, host=labels[HOST_LABEL])
                        self._dropped.append(discovered)
                        continue
                    path = labels.get(PATH_LABEL)
                    if not path:
                        log.warning("dropping target, no __path__ label", job=job.name, labels=discovered)
                        self._dropped.append(discovered)
                        continue
                    exclude = labels.get(PATH_EXCLUDE_LABEL, "")
                    public = {k: v for k, v in labels.items() if not k.startswith("__")}
                    key = (path, exclude, tuple(sorted(public.items())))
                    if key in seen:
                        log.info("ignoring target, already exists", job=job.name, path=path)
                        continue
                    seen.add(key)
                    self._targets.append(FileTarget(
                        job.name, path, exclude, public, discovered, self.positions, self.sink,
                        job.pipeline.process if job.pipeline else None, self.reader_options))

    async def start(self) -> None:
        """Build targets, tail what their globs match now, then re-sync every `sync_period`."""
        if self._task is not None:
            return
        self._build_targets()
        await self.sync()
        self._task = asyncio.create_task(self._run(), name="file-target-manager")

    async def sync(self) -> None:
        await asyncio.gather(*(t.sync() for t in self._targets))
        try:
            await asyncio.to_thread(self.positions.save)
        except OSError as exc:
            log.error("error saving positions file", path=self.positions.filename, err=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            try:
                await self.sync()
            except Exception:  # a failed sync is retried on the next tick
                log.exception("file target sync failed")

    async def stop(self) -> None:
        """Stop every reader (positions stay where the sink last accepted) and save the positions file."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await asyncio.gather(*(t.stop() for t in self._targets))
        self._targets = []
        await asyncio.to_thread(self.positions.save)

    def targets(self) -> list[dict[str, Any]]:
        """Active targets in the logs targets API shape (without `instance`)."""
        return [t.info() for t in self._targets]

    def dropped_targets(self) -> list[dict[str, str]]:
        return list(self._dropped)
