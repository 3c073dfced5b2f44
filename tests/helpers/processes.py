"""Stopping the peer processes tests start: always by PID, SIGTERM first, SIGKILL if one lingers."""

from __future__ import annotations

import os
import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM `proc` by PID and wait; SIGKILL it if it is still there after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
