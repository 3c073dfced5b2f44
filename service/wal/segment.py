"""Segment files: naming, listing, reading framed records out of one segment, and repairing its tail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from .record import HEADER, HEADER_SIZE, Position, Record, crc_ok

_DIGITS = 8
_CHUNK = 1 << 20


def segment_name(number: int) -> str:
    """File name of segment ``number`` (``00000001``)."""
    return f"{number:0{_DIGITS}d}"


def segment_path(directory: str, number: int) -> str:
    """Path of segment ``number`` in ``directory``."""
    return os.path.join(directory, segment_name(number))


def list_segments(directory: str) -> list[int]:
    """Segment numbers present in ``directory``, ascending; other files are ignored."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if len(n) == _DIGITS and n.isdigit())


@dataclass(slots=True)
class SegmentEnd:
    """Where reading one segment stopped and why.

    ``clean`` means the stop is at a record boundary with nothing invalid after it up to the limit;
    otherwise ``reason`` names what was found at ``offset`` (torn header, torn payload, bad CRC, ...).
    """

    offset: int = 0
    clean: bool = True
    reason: str = ""


@dataclass(slots=True)
class SegmentSummary:
    """Counts over the valid records of one segment (header scan, or a full read)."""

    records: int = 0
    bytes: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    by_type: dict[int, int] = field(default_factory=dict)

    @property
    def valid_end(self) -> int:
        """Where the valid records end (segments are summarised from offset 0)."""
        return self.bytes

    def add(self, rtype: int, time_ms: int, size: int) -> None:
        self.records += 1
        self.bytes += size
        self.by_type[rtype] = self.by_type.get(rtype, 0) + 1
        if self.first_ms is None or time_ms < self.first_ms:
            self.first_ms = time_ms
        if self.last_ms is None or time_ms > self.last_ms:
            self.last_ms = time_ms


def read_segment(fd: int, segment: int, offset: int, limit: int, end: SegmentEnd) -> Iterator[Record]:
    """Yield the valid records of the open segment ``fd`` in ``[offset, limit)``.

    Reads with ``pread`` in chunks, never past ``limit``, so bytes a writer has not yet made durable are
    not looked at. When the generator finishes, ``end`` says where and why it stopped.
    """
    for rtype, time_ms, pos, _size, payload in frames(fd, offset, limit, end, verify=True):
        yield Record(rtype, time_ms, payload, Position(segment, pos))


def frames(
    fd: int, offset: int, limit: int, end: SegmentEnd, *, verify: bool
) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Yield ``(type, time_ms, offset, size, payload)`` per valid frame in ``[offset, limit)``.

    With ``verify=False`` the CRC is not checked and payloads are skipped, not read (``payload`` is
    empty): a cheap header scan for statistics and retention.
    """
    buf = b""
    base = offset  # file offset of buf[0]
    pos = offset
    while True:
        end.offset = pos
        remaining = limit - pos
        if remaining == 0:
            end.clean, end.reason = True, ""
            return
        if remaining < HEADER_SIZE:
            end.clean, end.reason = False, f"torn header ({remaining} bytes)"
            return
        rel = pos - base
        if len(buf) - rel < HEADER_SIZE:
            buf, base, rel = _refill(fd, buf, base, rel, HEADER_SIZE, limit)
        rtype, length, time_ms, _crc = HEADER.unpack_from(buf, rel)
        if rtype == 0:
            end.clean, end.reason = False, "invalid header (type 0)"
            return
        size = HEADER_SIZE + length
        if size > remaining:
            end.clean, end.reason = False, f"torn payload (need {length}, have {remaining - HEADER_SIZE})"
            return
        payload = b""
        if verify:
            if len(buf) - rel < size:
                buf, base, rel = _refill(fd, buf, base, rel, size, limit)
            view = memoryview(buf)
            body = view[rel + HEADER_SIZE : rel + size]
            if not crc_ok(view[rel : rel + HEADER_SIZE], body):
                end.clean, end.reason = False, "CRC mismatch"
                return
            payload = bytes(body)
        elif len(buf) - rel < size:  # skip the payload without reading it
            buf, base = b"", pos + size
        pos += size
        yield rtype, time_ms, pos - size, size, payload


def _refill(fd: int, buf: bytes, base: int, rel: int, need: int, limit: int) -> tuple[bytes, int, int]:
    """Drop consumed bytes and read until at least ``need`` bytes from ``rel`` are buffered."""
    buf = buf[rel:]
    base += rel
    while len(buf) < need:
        want = min(max(need - len(buf), _CHUNK), limit - base - len(buf))
        chunk = os.pread(fd, want, base + len(buf))
        if not chunk:
            raise EOFError(f"segment shorter than expected at offset {base + len(buf)}")
        buf += chunk
    return buf, base, 0


def scan_segment(path: str, *, verify: bool = True) -> tuple[SegmentSummary, SegmentEnd]:
    """Summarise the valid records of a segment file and say where its valid part ends."""
    summary, end = SegmentSummary(), SegmentEnd()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        try:
            for rtype, time_ms, _pos, rsize, _payload in frames(fd, 0, size, end, verify=verify):
                summary.add(rtype, time_ms, rsize)
        except EOFError:  # the file shrank under us (truncated concurrently); stop there
            end.clean, end.reason = False, "file shrank while reading"
    finally:
        os.close(fd)
    return summary, end


def repair_segment(path: str) -> SegmentEnd:
    """Cut a torn or corrupt tail off a segment file (truncate at the last valid record).

    Returns where the valid part ends; ``end.clean`` is False when something was cut.
    """
    _, end = scan_segment(path, verify=True)
    if not end.clean:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, end.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    return end


def fsync_dir(directory: str) -> None:
    """Make a create, rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
