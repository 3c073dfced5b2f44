"""glibc malloc thresholds (service/mallocpacing.py): a request's megabyte buffers stop being faulted in
afresh each time, and a user's own MALLOC_* settings win. Each case runs in a fresh interpreter: the
thresholds are process-wide and cannot be undone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.helpers.node_process import REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# the receiver's pattern: bodies held until their fsync, one decompressed body at a time, all freed
SCRIPT = """
import resource, sys
from service import mallocpacing
paced = mallocpacing.pace() if sys.argv[1] == "pace" else None
def burst():
    held = [bytearray(230_000) for _ in range(8)]
    raw = bytearray(790_000)
    raw[::4096] = b"x" * len(raw[::4096])
    for body in held:
        body[::4096] = b"y" * len(body[::4096])
for _ in range(5):
    burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    burst()
print(paced, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults(mode: str, **env: str) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env={**clean, "PYTHONPATH": str(REPO), **env},
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    return out[0], float(out[1])


@pytest.mark.slow
def test_paced_process_reuses_request_buffers_instead_of_faulting_them_in() -> None:
    _, plain = faults("plain")
    if plain < 50:
        pytest.skip(f"this glibc keeps the buffers by itself ({plain} faults per burst)")
    paced, tuned = faults("pace")
    assert paced == "True"
    assert tuned < plain / 10, (plain, tuned)


@pytest.mark.slow
def test_user_malloc_settings_win() -> None:
    paced, _ = faults("pace", MALLOC_TRIM_THRESHOLD_="131072")
    assert paced == "False"
