"""The file side of the WAL: the open segment, its written and durable offsets, rolling and rewinding.

Used only by the WAL's flush thread (and by ``WAL.open`` before that thread starts). ``writev`` and
``fsync`` are attributes so tests can inject the disk faults a real disk cannot be made to show on demand.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from . import metrics
from .record import HEADER_SIZE
from .segment import SegmentSummary, fsync_dir, segment_path

_IOV_MAX = 1024
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


class SegmentWriter:
    """Appends frames to numbered segment files in ``directory``."""

    def __init__(self, directory: str, instance: str, log: logging.LoggerAdapter[logging.Logger], *,
                 fsync: bool) -> None:
        self.directory = directory
        self.instance = instance
        self.log = log
        self.fsync_enabled = fsync
        self.fd: int | None = None
        self.segment = 0  # the open segment, or the one to create next when fd is None
        self.offset = 0  # bytes written to it
        self.synced = 0  # bytes of it covered by an fsync
        self.fsync_count = 0
        self.summaries: dict[int, SegmentSummary] = {}  # segments written by this process
        self.current: SegmentSummary | None = None
        self.limits: dict[int, int] = {}  # valid length of segments left with failed bytes at the end
        self._closed_bytes = 0  # bytes in segments other than the open one
        self._bytes_lock = threading.Lock()
        self.writev = os.writev
        self.fsync = os.fdatasync
        self._entry_unsynced = False  # a segment created since the last sync: its directory entry too

    # --- opening -----------------------------------------------------------------------------------
    def reopen(self, segment: int) -> None:
        """Continue in an existing, empty segment."""
        self.fd = os.open(segment_path(self.directory, segment), _OPEN_FLAGS)
        self._started(segment)

    def create(self, segment: int) -> None:
        """Create segment ``segment``; its directory entry is made durable by the next :meth:`sync`, before
        anything written to it counts as durable (so opening an idle WAL costs no fsync)."""
        self.segment = segment
        self.fd = os.open(segment_path(self.directory, segment), _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        self._started(segment)
        self._entry_unsynced = self.fsync_enabled

    def _started(self, segment: int) -> None:
        self.segment = segment
        self.offset = self.synced = 0
        self.current = self.summaries.setdefault(segment, SegmentSummary())
        metrics.SEGMENT_CURRENT.labels(self.instance).set(segment)

    def ensure_open(self) -> None:
        if self.fd is None:
            self.create(self.segment)

    def roll(self) -> None:
        """Close the open segment (already synced) and create the next one."""
        fd, self.fd = self.fd, None
        os.close(fd)
        self.add_closed_bytes(self.offset)
        self.create(self.segment + 1)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # --- writing -----------------------------------------------------------------------------------
    def note(self, rtype: int, time_ms: int, payload_len: int) -> None:
        """Count a record about to be written to the open segment (for retention)."""
        if self.current is not None:
            self.current.add(rtype, time_ms, HEADER_SIZE + payload_len)

    def write(self, iov: list[bytes | memoryview]) -> None:
        """Write all of ``iov``, resuming after short writes."""
        while iov:
            chunk = iov[:_IOV_MAX]
            n = self.writev(self.fd, chunk)
            self.offset += n
            if n == sum(len(b) for b in chunk):
                iov = iov[len(chunk) :]
                continue
            i = 0  # a short write: keep what was not written
            while n >= len(iov[i]):
                n -= len(iov[i])
                i += 1
            iov = [memoryview(iov[i])[n:], *iov[i + 1 :]]

    def sync(self) -> None:
        """Make everything written so far durable."""
        if self._entry_unsynced:
            fsync_dir(self.directory)
            self._entry_unsynced = False
        if self.fsync_enabled:
            started = time.perf_counter()
            self.fsync(self.fd)
            metrics.FSYNC_DURATION.labels(self.instance).observe(time.perf_counter() - started)
            self.fsync_count += 1
        self.synced = self.offset

    # --- after a failure ---------------------------------------------------------------------------
    def rewind(self) -> None:
        """Drop everything written since the last sync; if that fails, move on to a new segment.

        Either way nothing that was not durable stays in front of later records.
        """
        self.summaries.pop(self.segment, None)  # its counts include failed records; rescan when needed
        self.current = None
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, self.synced)
                self.offset = self.synced
            except OSError:
                self.limits[self.segment] = self.synced
                self._invalidate_tail()
                try:
                    os.close(self.fd)
                except OSError:
                    self.log.debug("close after failed truncate", exc_info=True)
                self.fd = None
                self.add_closed_bytes(self.offset)
                self.segment += 1
                self.offset = self.synced = 0
        while self.fd is None and os.path.exists(segment_path(self.directory, self.segment)):
            self.segment += 1

    def _invalidate_tail(self) -> None:
        """Best effort when truncating failed: zero the first failed header so a later open cuts there."""
        if self.offset <= self.synced:
            return
        try:
            fd = os.open(segment_path(self.directory, self.segment), os.O_WRONLY | os.O_CLOEXEC)
            try:  # not the O_APPEND descriptor: Linux pwrite would append
                os.pwrite(fd, bytes(min(HEADER_SIZE, self.offset - self.synced)), self.synced)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.log.warning("could not invalidate failed WAL records; they may be read after a restart",
                             segment=self.segment)

    # --- size accounting ---------------------------------------------------------------------------
    def add_closed_bytes(self, n: int) -> None:
        """Account bytes of segments other than the open one (negative when retention deletes)."""
        with self._bytes_lock:
            self._closed_bytes += n

    def storage_bytes(self) -> int:
        return self._closed_bytes + self.offset
