"""Saved read offsets, in Promtail's positions file format:

    positions:
      /var/log/app.log: "1234"

Offsets are kept as strings (as Promtail does, so non-file sources may store cursors). The file is rewritten
atomically (temporary file, fsync, rename) every `sync_period` and on stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading

import yaml

from service.config.errors import ConfigError
from service.log import get_logger
from service.tasks import cancel_and_wait

log = get_logger("logs.positions")


class Positions:
    def __init__(self, filename: str, sync_period: float = 10.0, ignore_invalid_yaml: bool = False) -> None:
        self.filename = filename
        self.sync_period = sync_period
        self._lock = threading.Lock()
        self._values: dict[str, str] = self._read(ignore_invalid_yaml)
        self._task: asyncio.Task[None] | None = None

    def _read(self, ignore_invalid_yaml: bool) -> dict[str, str]:
        try:
            with open(self.filename, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"error reading positions file {self.filename}: {exc}") from None
        try:
            doc = yaml.safe_load(data) or {}
            raw = doc.get("positions") or {} if isinstance(doc, dict) else None
            if not isinstance(raw, dict):
                raise ValueError("positions must be a mapping")
            return {str(k): str(v) for k, v in raw.items()}
        except (yaml.YAMLError, ValueError, AttributeError) as exc:
            if ignore_invalid_yaml:
                log.warning("ignoring invalid positions file", path=self.filename, err=str(exc))
                return {}
            raise ConfigError(f"invalid yaml positions file [{self.filename}]: {exc}") from None

    # -- values --------------------------------------------------------------------------------------------
    def get(self, path: str) -> int:
        """The saved byte offset for `path`, 0 when none (or when the value is not a number)."""
        with self._lock:
            value = self._values.get(path)
        try:
            return int(value) if value is not None else 0
        except ValueError:
            return 0

    def get_string(self, key: str) -> str:
        with self._lock:
            return self._values.get(key, "")

    def put(self, path: str, offset: int) -> None:
        self.put_string(path, str(offset))

    def put_string(self, key: str, value: str) -> None:
        with self._lock:
            self._values[key] = value

    def remove(self, path: str) -> None:
        with self._lock:
            self._values.pop(path, None)

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._values)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write all positions atomically; a crash leaves either the old or the new file."""
        text = yaml.safe_dump({"positions": self.snapshot()}, default_flow_style=False, sort_keys=True)
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".positions-", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.filename)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def cleanup(self) -> None:
        """Forget file paths that no longer exist (as Promtail does on each sync)."""
        for key in self.snapshot():
            if key.startswith("/") and not os.path.exists(key):
                self.remove(key)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"positions:{self.filename}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await asyncio.to_thread(self.save)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            try:
                await asyncio.to_thread(self.save)
            except OSError as exc:
                log.error("error saving positions file", path=self.filename, err=str(exc))
