"""Running the installed console script as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.node_process import REPO

SCRIPT = Path(sys.executable).parent / "scraping-service"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
