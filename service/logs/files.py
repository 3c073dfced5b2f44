"""File tailing for one logs instance: its Promtail file scrape configs, their positions file, and the
bridge from tailed entries to the instance's durable push path."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from service.config.schema import encode
from service.logs.config import LogsInstanceConfig, ScrapeConfig
from service.logs.entry import Entry
from service.logs.labels import format_labels
from service.logs.tail.manager import FileTargetManager
from service.logs.tail.positions import Positions
from service.proto.push_pb2 import PushRequest
from service.wal.naming import safe_name

TENANT_LABEL = "__tenant_id__"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
Push = Callable[[PushRequest, str, int], Awaitable[None]]


def file_scrape_configs(cfg: LogsInstanceConfig) -> list[ScrapeConfig]:
    """The scrape configs that tail files (static_configs with `__path__`), as Promtail runs them."""
    return [sc for sc in cfg.scrape_configs if sc.loki_push_api is None and sc.static_configs]


def positions_path(cfg: LogsInstanceConfig, positions_dir: str) -> str:
    """`positions.filename`, else `<positions_directory>/<name>.yml` as the agent names it; a name that
    is not a plain file name is made safe first (names are never used as raw paths)."""
    if cfg.positions.filename:
        return cfg.positions.filename
    if not positions_dir:
        raise ValueError(f"cannot generate Loki positions file path for {cfg.name} because "
                         "positions_directory is not configured")
    stem = cfg.name if _PLAIN_NAME.match(cfg.name) else safe_name(cfg.name)
    return os.path.join(positions_dir, f"{stem}.yml")


def to_push_requests(entries: list[Entry]) -> dict[str, tuple[PushRequest, int]]:
    """Group entries by tenant and stream into one PushRequest per tenant (labels without `__*`)."""
    by_tenant: dict[str, dict[str, Any]] = {}
    for entry in entries:
        tenant = entry.labels.get(TENANT_LABEL, "")
        labels = {k: v for k, v in entry.labels.items() if not k.startswith("__")}
        streams = by_tenant.setdefault(tenant, {})
        key = format_labels(labels)
        streams.setdefault(key, []).append(entry)
    out: dict[str, tuple[PushRequest, int]] = {}
    for tenant, streams in by_tenant.items():
        request = PushRequest()
        count = 0
        for labels, stream_entries in streams.items():
            stream = request.streams.add(labels=labels)
            for entry in stream_entries:
                item = stream.entries.add(line=entry.line)
                item.timestamp.seconds, item.timestamp.nanos = divmod(entry.timestamp_ns, 1_000_000_000)
                for name, value in entry.metadata.items():
                    item.structuredMetadata.add(name=name, value=value)
                count += 1
        out[tenant] = (request, count)
    return out


class FileTailing:
    """Runs the file targets of one logs instance and hands their entries to `push` (durable)."""

    def __init__(self, cfg: LogsInstanceConfig, positions_dir: str, push: Push) -> None:
        self._push = push
        positions = Positions(positions_path(cfg, positions_dir), float(cfg.positions.sync_period),
                              cfg.positions.ignore_invalid_yaml)
        jobs = [encode(sc, show_secrets=True) for sc in file_scrape_configs(cfg)]
        self.manager = FileTargetManager(jobs, positions, self._sink,
                                         sync_period=float(cfg.target_config.sync_period))

    async def _sink(self, entries: list[Entry]) -> None:
        for tenant, (request, count) in to_push_requests(entries).items():
            await self._push(request, tenant, count)

    async def start(self) -> None:
        await self.manager.start()

    async def stop(self) -> None:
        await self.manager.stop()

    def targets(self) -> list[dict[str, Any]]:
        return self.manager.targets()
