"""Progress markers: per consumer, the WAL position it has consumed up to, stored atomically."""

from __future__ import annotations

import asyncio
import json
import os

from service.log import get_logger

from .naming import safe_name
from .record import Position
from .segment import fsync_dir

_log = get_logger("wal")

MARKER_DIR = "markers"
_SUFFIX = ".json"


class ProgressMarker:
    """The position ``consumer`` has consumed up to (the ``end`` of its last sent record).

    One small JSON file per consumer under ``<wal>/markers/``, replaced atomically (write a temporary
    file, fsync, rename, fsync the directory), so after a crash it holds the old or the new position.
    """

    def __init__(self, wal_directory: str, consumer: str) -> None:
        self.consumer = consumer
        self._dir = os.path.join(wal_directory, MARKER_DIR)
        self.path = os.path.join(self._dir, safe_name(consumer) + _SUFFIX)

    def load(self) -> Position | None:
        """The stored position, or None if there is none (or it is unreadable, which is logged)."""
        return _read(self.path, self.consumer)

    def store(self, position: Position) -> None:
        """Replace the stored position. Blocking (two fsyncs); see :meth:`store_async`."""
        os.makedirs(self._dir, exist_ok=True)
        body = json.dumps(
            {"consumer": self.consumer, "segment": position.segment, "offset": position.offset}
        ).encode()
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self._dir)

    async def store_async(self, position: Position) -> None:
        """:meth:`store` off the event loop."""
        await asyncio.to_thread(self.store, position)


def _read(path: str, consumer: str | None) -> Position | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        if consumer is not None and data["consumer"] != consumer:
            raise ValueError(f"marker belongs to {data['consumer']!r}")
        return Position(int(data["segment"]), int(data["offset"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        _log.warning("unreadable WAL progress marker", path=path, err=str(e))
        return None


def list_markers(wal_directory: str) -> dict[str, Position]:
    """Every consumer's stored position in a WAL directory (read-only)."""
    directory = os.path.join(wal_directory, MARKER_DIR)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return {}
    out: dict[str, Position] = {}
    for name in names:
        if not name.endswith(_SUFFIX):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                consumer = json.loads(f.read())["consumer"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        pos = _read(path, consumer)
        if pos is not None:
            out[consumer] = pos
    return out
