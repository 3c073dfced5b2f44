"""Reading records back from disk, from a position onwards, across segments (not following the writer)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from .record import Position, Record
from .segment import SegmentEnd, list_segments, read_segment, segment_path


@dataclass(frozen=True, slots=True)
class Corruption:
    """Invalid bytes a reader stopped at; the rest of that segment was skipped."""

    segment: int
    offset: int
    reason: str


class WALReader:
    """Iterate the valid records in ``directory`` from ``start`` (default: the oldest record).

    Each segment is read up to its end on disk, or up to ``limits[segment]`` when given. A torn or
    corrupt part ends that segment: it is noted in ``corruptions`` and reading goes on with the next
    segment (records never span segments). If ``start`` names a segment that no longer exists, reading
    starts at the next one that does. ``position`` is where reading stopped. Read-only.
    """

    def __init__(
        self, directory: str, start: Position | None = None, *, limits: dict[int, int] | None = None
    ) -> None:
        self.directory = directory
        self.start = start
        self.position = start or Position(0, 0)
        self.corruptions: list[Corruption] = []
        self._limits = limits or {}

    def __iter__(self) -> Iterator[Record]:
        start = self.start or Position(0, 0)
        for number in list_segments(self.directory):
            if number < start.segment:
                continue
            offset = start.offset if number == start.segment else 0
            try:
                fd = os.open(segment_path(self.directory, number), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # deleted by retention meanwhile
                continue
            try:
                limit = self._limits.get(number, os.fstat(fd).st_size)
                end = SegmentEnd()
                if offset <= limit:
                    for rec in read_segment(fd, number, offset, limit, end):
                        self.position = rec.end
                        yield rec
                    if not end.clean:
                        self.corruptions.append(Corruption(number, end.offset, end.reason))
                else:
                    self.corruptions.append(Corruption(number, offset, "start beyond end of segment"))
            finally:
                os.close(fd)
            self.position = Position(number, end.offset if offset <= limit else offset)


def read_records(directory: str, start: Position | None = None) -> Iterator[Record]:
    """Shorthand for ``iter(WALReader(directory, start))``."""
    return iter(WALReader(directory, start))
