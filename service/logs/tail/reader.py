"""Tail one file by name: read from the saved position, split lines, hand batches to the sink, and only
then advance the position.

Follows Promtail's tailer: a partial last line waits for its newline; when the name points to a new file
(rename + create rotation) the old file is read to its end first; a file shorter than the read offset was
truncated (copytruncate) and is read again from 0. File I/O runs in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import BinaryIO

from service.log import RepeatedWarning, get_logger
from service.logs.entry import Entry, Sink
from service.logs.tail import metrics
from service.logs.tail.positions import Positions

log = get_logger("logs.tail")

FILENAME_LABEL = "filename"
DEFAULT_MAX_LINE_BYTES = 256 * 1024
READ_CHUNK = 256 * 1024
MAX_SINK_BACKOFF = 5.0

Process = Callable[[Entry], "Entry | None"]


class FileReader:
    def __init__(self, path: str, labels: dict[str, str], positions: Positions, sink: Sink,
                 process: Process | None = None, *, poll_min: float = 0.25, poll_max: float = 0.25,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.path = path
        self.labels = {**labels, FILENAME_LABEL: path}
        self.positions = positions
        self.sink = sink
        self.process = process
        self.poll_min = poll_min
        self.poll_max = max(poll_max, poll_min)
        self.max_line_bytes = max_line_bytes
        self._fh: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None
        self._buf = b""
        self._buf_off = 0          # file offset of the first byte of _buf (= the committable position)
        self._skipping = False     # discarding the rest of a line that was cut at max_line_bytes
        self._reopen_at_zero = False
        self._stop = asyncio.Event()
        self._drain = False
        self._task: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        return self.positions.get(self.path)

    def start(self) -> None:
        metrics.FILES_ACTIVE.inc()
        self._task = asyncio.create_task(self._run(), name=f"tail:{self.path}")

    async def stop(self, *, drain: bool = False, timeout: float = 5.0) -> None:
        """Stop reading. With `drain`, first read what is left of the open file (used when its name went
        away, so the end of a rotated file is not lost)."""
        self._drain = drain
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("tailer did not stop in time", path=self.path)
            metrics.FILES_ACTIVE.dec()
        self._close()

    # -- loop ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.poll_min
        failing = RepeatedWarning(log, "error reading file")  # a file we cannot read fails on every poll
        while True:
            stopping = self._stop.is_set()
            if stopping and not self._drain:
                return
            try:
                progressed = await self._step()
            except OSError as exc:
                failing.failed(path=self.path, err=str(exc))
                self._close()
                progressed = False
            else:
                failing.recovered("reading file again", path=self.path)
            if stopping and not progressed:
                return
            if progressed:
                interval = self.poll_min
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            interval = min(interval * 2, self.poll_max)

    async def _step(self) -> bool:
        """One read; True when it made progress (lines sent or state changed)."""
        if self._fh is None and not await asyncio.to_thread(self._open):
            return False
        chunk = await asyncio.to_thread(self._read)
        if chunk:
            lines, end = self._split(chunk)
            if lines:
                return await self._deliver(lines, end)
            self._commit(end)
            return True
        if self._stop.is_set():          # draining: the open file is read to its end
            await self._flush_partial()
            return False
        return await self._check_file()

    def _open(self) -> bool:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across steps
        except FileNotFoundError:
            return False
        st = os.fstat(fh.fileno())
        pos = 0 if self._reopen_at_zero else self.positions.get(self.path)
        if st.st_size < pos:
            log.info("file shorter than saved position, reading from start", path=self.path,
                     position=pos, size=st.st_size)
            pos = 0
        fh.seek(pos)
        self._fh, self._ident = fh, (st.st_dev, st.st_ino)
        self._buf, self._buf_off, self._skipping, self._reopen_at_zero = b"", pos, False, False
        self.positions.put(self.path, pos)
        return True

    def _read(self) -> bytes:
        assert self._fh is not None
        data = self._fh.read(READ_CHUNK)
        if data:
            metrics.READ_BYTES.labels(self.path).set(self._fh.tell())
        return data

    def _split(self, data: bytes) -> tuple[list[bytes], int]:
        """Complete lines in `data` (after any buffered partial line) and the offset just past them."""
        buf = self._buf + data
        offset = self._buf_off
        if self._skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self._buf, self._buf_off = b"", offset + len(buf)
                return [], self._buf_off
            buf, offset, self._skipping = buf[nl + 1:], offset + nl + 1, False
        last = buf.rfind(b"\n")
        lines = buf[:last].split(b"\n") if last >= 0 else []
        rest = buf[last + 1:]
        offset += last + 1
        if len(rest) > self.max_line_bytes:     # a line too long to wait for: cut it, skip to its end
            lines.append(rest)
            offset += len(rest)
            rest, self._skipping = b"", True
        self._buf, self._buf_off = rest, offset
        return lines, offset

    async def _check_file(self) -> bool:
        """At the end of the open file: handle truncation, rotation and deletion."""
        assert self._fh is not None
        fh = self._fh
        size = os.fstat(fh.fileno()).st_size
        metrics.FILE_BYTES.labels(self.path).set(size)
        if size < fh.tell():
            log.info("file truncated, reading from start", path=self.path, size=size, offset=fh.tell())
            metrics.TRUNCATIONS.labels(self.path).inc()
            fh.seek(0)
            self._buf, self._buf_off, self._skipping = b"", 0, False
            self.positions.put(self.path, 0)
            return True
        try:
            st = os.stat(self.path)
            ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            ident = None
        if ident == self._ident:
            return False
        # The name now points elsewhere (or nowhere): the old file is read to its end; its partial last
        # line will get no newline any more, so it is sent as it is.
        if not await self._flush_partial():
            return False
        if ident is not None:
            log.info("file rotated, switching to the new file", path=self.path)
            metrics.ROTATIONS.labels(self.path).inc()
        self._close()
        self._reopen_at_zero = True
        if ident is not None:
            self.positions.put(self.path, 0)
        return ident is not None

    async def _flush_partial(self) -> bool:
        if not self._buf or self._skipping:
            return True
        end = self._buf_off + len(self._buf)
        lines, self._buf = [self._buf], b""
        return await self._deliver(lines, end)

    # -- delivery ------------------------------------------------------------------------------------------
    async def _deliver(self, lines: list[bytes], end: int) -> bool:
        """Send the lines' entries until the sink accepts them, then commit `end`. False when stopped before
        the sink accepted (the position stays, so the lines are read again after a restart)."""
        entries = self._entries(lines)
        backoff = self.poll_min
        while entries:
            try:
                await self.sink(entries)
                break
            except Exception as exc:  # any sink failure is back-pressure: retry
                metrics.SINK_FAILURES.inc()
                log.debug("sink refused batch, retrying", path=self.path, err=str(exc))
            if self._stop.is_set():
                if not self._drain:
                    return False
                await asyncio.sleep(backoff)     # draining: retry until stop()'s deadline
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
                if self._stop.is_set() and not self._drain:
                    return False
            backoff = min(backoff * 2, MAX_SINK_BACKOFF)
        metrics.READ_LINES.labels(self.path).inc(len(lines))
        self._commit(end)
        return True

    def _entries(self, lines: list[bytes]) -> list[Entry]:
        now = time.time_ns()
        out: list[Entry] = []
        limit = self.max_line_bytes
        for raw in lines:
            if len(raw) > limit:
                raw = raw[:limit]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            entry: Entry | None = Entry(dict(self.labels), now, raw.decode("utf-8", "replace"))
            if self.process is not None:
                entry = self.process(entry)  # type: ignore[arg-type]
            if entry is not None:
                out.append(entry)
        return out

    def _commit(self, end: int) -> None:
        self.positions.put(self.path, end)

    def _close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
