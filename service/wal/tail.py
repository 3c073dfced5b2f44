"""A live tail: follow the WAL from a position, yielding only durable records, waiting for more.

The WAL sets the tail's ``asyncio.Event`` after every sync, so a caught-up tail sleeps until there is
something new, without polling. Nothing past the WAL's durable position is ever read, so a consumer can
never send a record whose append was not acknowledged.
"""

from __future__ import annotations

import asyncio
import os

from . import metrics
from .reader import Corruption
from .record import Position, Record
from .segment import SegmentEnd, list_segments, read_segment, segment_path
from .writer import WAL


class WALTail:
    """Async iterator over the durable records of ``wal`` from ``start`` (default: the oldest).

    ``position`` is the end of the last record handed out: what the consumer stores in its marker
    once it has sent it. Use :meth:`next_batch` to take many records at once. Stop with :meth:`close`;
    iteration also ends once the WAL is closed and everything durable has been read.
    """

    def __init__(self, wal: WAL, start: Position | None = None) -> None:
        self._wal = wal
        self.position = start if start is not None else self._oldest()
        self.corruptions: list[Corruption] = []
        self.skipped_segments = 0  # segments deleted by retention before this tail read them
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._fd_seg = -1
        self._closed = False
        self._stuck_in: int | None = None  # a corrupt spot in the segment still being written

    def __aiter__(self) -> WALTail:
        return self

    async def __anext__(self) -> Record:
        batch = await self.next_batch(max_records=1)
        if not batch:
            raise StopAsyncIteration
        return batch[0]

    async def next_batch(self, max_records: int = 1000, max_bytes: int = 4 << 20) -> list[Record]:
        """Wait until at least one durable record is available; return up to the given limits.

        Returns an empty list only when the tail or the WAL was closed and nothing is left.
        """
        if self._loop is None and not self._closed:
            self._loop = asyncio.get_running_loop()
            self._wal.subscribe(self._event, self._loop)
        while True:
            self._event.clear()
            batch = self.read_available(max_records, max_bytes)
            if batch or self._closed:
                return batch
            if self._wal.closed and self.position >= self._wal.durable_position:
                return []
            await self._event.wait()

    def read_available(self, max_records: int = 1000, max_bytes: int = 4 << 20) -> list[Record]:
        """The durable records available now (no waiting); may be empty."""
        out: list[Record] = []
        size = 0
        while len(out) < max_records and size < max_bytes and not self._closed:
            durable = self._wal.durable_position
            seg = self.position.segment
            if seg > durable.segment:
                return out
            if self._stuck_in == seg:
                if seg == durable.segment:
                    return out
                self._stuck_in = None
                self._next_segment(skipped=False)
                continue
            fd = self._open(seg)
            if fd is None:
                if seg >= durable.segment:
                    return out  # the segment being written is not created yet
                self._next_segment(skipped=True)
                continue
            if seg == durable.segment:
                limit = durable.offset
            else:
                limit = self._wal.segment_limit(seg)
                if limit is None:
                    limit = os.fstat(fd).st_size
            if self.position.offset >= limit:
                if seg == durable.segment:
                    return out  # caught up
                self._next_segment(skipped=False)
                continue
            end = SegmentEnd()
            for rec in read_segment(fd, seg, self.position.offset, limit, end):
                out.append(rec)
                size += rec.size
                self.position = rec.end
                if len(out) >= max_records or size >= max_bytes:
                    return out
            if not end.clean:
                self._corrupt(seg, end, durable)
        return out

    def close(self) -> None:
        """Stop following; a pending :meth:`next_batch` returns what it has (or ends iteration)."""
        self._closed = True
        self._event.set()
        if self._loop is not None:
            self._wal.unsubscribe(self._event, self._loop)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- helpers -----------------------------------------------------------------------------------
    def _oldest(self) -> Position:
        segments = list_segments(self._wal.directory)
        return Position(segments[0], 0) if segments else self._wal.durable_position

    def _open(self, seg: int) -> int | None:
        if self._fd_seg != seg:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            try:
                self._fd = os.open(segment_path(self._wal.directory, seg), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            self._fd_seg = seg
        return self._fd

    def _next_segment(self, *, skipped: bool) -> None:
        """Move to the next segment that exists (or to the one being written)."""
        seg = self.position.segment
        later = [n for n in list_segments(self._wal.directory) if n > seg]
        nxt = later[0] if later else max(seg + 1, self._wal.durable_position.segment)
        if skipped:
            self.skipped_segments += 1
            self._wal.log.warning("WAL segment gone before it was read; skipping on", segment=seg, next_segment=nxt)
        self.position = Position(nxt, 0)

    def _corrupt(self, seg: int, end: SegmentEnd, durable: Position) -> None:
        """Invalid bytes inside the durable part: count them, skip the rest of the segment."""
        self.corruptions.append(Corruption(seg, end.offset, end.reason))
        metrics.CORRUPTIONS.labels(self._wal.instance).inc()
        self._wal.log.error("corrupt WAL record; skipping the rest of the segment", segment=seg, offset=end.offset,
                            reason=end.reason)
        if seg == durable.segment:
            self._stuck_in = seg  # wait for the writer to move on to the next segment
            self.position = Position(seg, end.offset)
        else:
            self._next_segment(skipped=False)
