"""schemathesis against a live node, driven by the node's own /api/openapi.json (docs/http-api.md).

Every documented operation gets generated requests, valid and invalid (schemathesis' positive and negative
modes); the checks are: no 5xx, status codes and content types as documented. Bounded by examples per
operation and a time budget so the run stays near a minute in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.conftest import FuzzEnv

pytestmark = pytest.mark.slow
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
MAX_TIME = int(os.environ.get("SCHEMATHESIS_MAX_TIME", "60"))  # seconds: schemathesis' budget for the run
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


def st_binary() -> str | None:
    candidate = Path(sys.executable).with_name("st")
    return str(candidate) if candidate.exists() else shutil.which("st")


def test_schemathesis_finds_no_server_error(fuzz_env: FuzzEnv, tmp_path: Path) -> None:
    binary = st_binary()
    if binary is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    base = f"http://127.0.0.1:{fuzz_env.node.port}"
    args = [binary, "run", f"{base}/api/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
            "--max-time", str(MAX_TIME), "--workers", "1", "--request-timeout", "30", "--seed", "11",
            "--suppress-health-check", "all", "--output-truncate=true", "--phases", "examples,coverage,fuzzing",
            "--report", "junit", "--report-dir", str(tmp_path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=MAX_TIME + 60,
                          env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": "tests.fuzz.st_hooks",
                               "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    output = proc.stdout + proc.stderr
    summary = [line.strip() for line in output.splitlines() if "generated" in line or "Tested:" in line]
    print("\nFUZZ schemathesis:", "; ".join(summary))
    assert proc.returncode == 0, output[-6000:]
    assert "passed" in output.lower(), output[-3000:]
    assert fuzz_env.node.get("/-/healthy").status == 200
