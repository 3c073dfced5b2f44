"""A small tmpfs mounted for a test, so writes really fail with ENOSPC (needs root and mount)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "256k", "48m") at `mnt`; skips the test where that is not possible."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path, leave: int = 0) -> None:
    """Fill the file system of `path` (a new file) until ENOSPC, then give back `leave` bytes."""
    with open(path, "wb", buffering=0) as fh:  # unbuffered: closing never writes (or fails) again
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), open(path, "ab") as fh:
        while True:  # the last partial MiB
            fh.write(b"\0" * 4096)
            fh.flush()
    if leave:
        os.truncate(path, max(0, os.path.getsize(path) - leave))
