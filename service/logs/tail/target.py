"""A file target: one static_configs target after relabeling — a `__path__` glob, an optional
`__path_exclude__` glob and the labels its lines carry — and the readers of the files it matches."""

from __future__ import annotations

import asyncio
import glob
import os
from typing import Any

from service.log import get_logger
from service.logs.entry import Sink
from service.logs.tail import metrics
from service.logs.tail.positions import Positions
from service.logs.tail.reader import FileReader, Process

log = get_logger("logs.tail")


def expand(pattern: str, exclude: str = "") -> set[str]:
    """Regular files matching `pattern` (`**` spans directories, as Promtail's doublestar does) and not
    `exclude`."""
    matches = {p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)}
    if exclude and matches:
        matches -= set(glob.glob(exclude, recursive=True))
    return matches


class FileTarget:
    def __init__(self, job: str, path: str, exclude: str, labels: dict[str, str],
                 discovered_labels: dict[str, str], positions: Positions, sink: Sink,
                 process: Process | None, reader_options: dict[str, Any]) -> None:
        self.job = job
        self.path = path
        self.exclude = exclude
        self.labels = labels
        self.discovered_labels = discovered_labels
        self.positions = positions
        self.sink = sink
        self.process = process
        self.reader_options = reader_options
        self.readers: dict[str, FileReader] = {}

    async def sync(self) -> None:
        """Tail newly matching files; stop (after reading what is left) and forget files no longer matched."""
        matches = await asyncio.to_thread(expand, self.path, self.exclude)
        for path in sorted(matches - self.readers.keys()):
            log.info("start tailing file", path=path, job=self.job)
            reader = FileReader(path, self.labels, self.positions, self.sink, self.process,
                                **self.reader_options)
            self.readers[path] = reader
            reader.start()
        gone = [p for p in self.readers if p not in matches]
        if gone:
            await asyncio.gather(*(self._drop(p) for p in gone))

    async def _drop(self, path: str) -> None:
        log.info("stop tailing file", path=path, job=self.job)
        reader = self.readers.pop(path)
        await reader.stop(drain=True)
        self.positions.remove(path)
        metrics.forget(path)

    async def stop(self) -> None:
        readers, self.readers = self.readers, {}
        await asyncio.gather(*(r.stop() for r in readers.values()))

    def ready(self) -> bool:
        """Promtail: a file target is ready once it tails at least one file."""
        return bool(self.readers)

    def details(self) -> dict[str, int]:
        return {path: self.positions.get(path) for path in self.readers}

    def info(self) -> dict[str, Any]:
        """The target as the logs targets API shows it (the caller adds `instance`)."""
        return {
            "target_group": self.job,
            "type": "File",
            "labels": dict(self.labels),
            "discovered_labels": dict(self.discovered_labels),
            "ready": self.ready(),
            "details": self.details(),
        }
