"""file_sd_configs: JSON/YAML files (globs in the last path element), re-read when they change on disk.

Files are polled by modification time and size every `poll_interval` seconds and fully re-read every
`refresh_interval`. A file that fails to parse keeps its previous groups, as in Prometheus.
"""

from __future__ import annotations

import asyncio
import glob
import os

import orjson
import yaml

from service.metrics.config.discovery import FileSDConfig
from service.metrics.discovery.base import Provider, TargetGroup, parse_groups


class FileProvider(Provider):
    kind = "file"

    def __init__(self, config: FileSDConfig, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.poll_interval = poll_interval
        self._stamps: dict[str, tuple[int, int]] = {}
        self._by_file: dict[str, list[TargetGroup]] = {}

    def _paths(self) -> list[str]:
        out: set[str] = set()
        for pattern in self.config.files:
            out.update(glob.glob(pattern))
        return sorted(out)

    def _read(self, path: str) -> list[TargetGroup]:
        with open(path, "rb") as fh:
            raw = fh.read()
        data = orjson.loads(raw) if path.lower().endswith(".json") else yaml.safe_load(raw)
        return parse_groups(data or [], path, {"__meta_filepath": path})

    def refresh(self, force: bool = False) -> None:
        paths = self._paths()
        stamps: dict[str, tuple[int, int]] = {}
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamps[path] = (st.st_mtime_ns, st.st_size)
        if not force and stamps == self._stamps:
            return
        by_file: dict[str, list[TargetGroup]] = {}
        for path in stamps:
            if not force and self._stamps.get(path) == stamps[path] and path in self._by_file:
                by_file[path] = self._by_file[path]
                continue
            try:
                by_file[path] = self._read(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                self.log.error("error reading file", path=path, err=str(exc))
                by_file[path] = self._by_file.get(path, [])
        self._stamps, self._by_file = stamps, by_file
        self.publish({g.source: g for groups in by_file.values() for g in groups})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        full_every = max(float(self.config.refresh_interval), self.poll_interval)
        last_full = loop.time()
        self.refresh(force=True)
        while True:
            await asyncio.sleep(self.poll_interval)
            force = loop.time() - last_full >= full_every
            if force:
                last_full = loop.time()
            self.refresh(force=force)
