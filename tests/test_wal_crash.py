"""kill -9 while appending: every acknowledged record is present and intact after reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from service.wal import WAL, WALReader
from tests.helpers.wal_helpers import payload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from tests.helpers.wal_helpers import payload
from service.wal import WAL

async def appender(wal, w, out):
    i = 0
    while True:
        n = w * 1_000_000 + i
        pos = await wal.append_durable(1 + n % 3, payload(n, 50 + n % 3000))
        out.write(f"{n} {pos.segment} {pos.offset}\\n")
        out.flush()
        i += 1

async def main():
    wal = WAL.open(sys.argv[1], segment_size=256 * 1024, sync_interval=0.001, instance="crash")
    await asyncio.gather(*(appender(wal, w, sys.stdout) for w in range(8)))

asyncio.run(main())
"""


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    d = str(tmp_path / "wal")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, d, os.path.join(ROOT, "tests")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    acked: list[tuple[int, int, int]] = []
    try:
        deadline = time.monotonic() + 20
        while len(acked) < 3000:
            line = proc.stdout.readline()
            assert line, f"writer exited early: {proc.stderr.read().decode()}"
            n, seg, off = map(int, line.split())
            acked.append((n, seg, off))
            assert time.monotonic() < deadline, "writer too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for line in proc.stdout.read().splitlines():  # acknowledged before the kill, still in the pipe
        parts = line.split()
        if len(parts) == 3:
            acked.append(tuple(map(int, parts)))
    proc.stdout.close()
    proc.stderr.close()

    wal = WAL.open(d, segment_size=256 * 1024, instance="crash-reopen")
    after = wal.append(2, b"after the crash")
    wal.sync()
    wal.close()
    reader = WALReader(d)
    records = {(r.position.segment, r.position.offset): r for r in reader}
    assert reader.corruptions == []
    for n, seg, off in acked:
        rec = records.get((seg, off))
        assert rec is not None, f"acknowledged record {n} at {seg}:{off} is missing"
        assert rec.payload == payload(n, 50 + n % 3000) and rec.type == 1 + n % 3
    assert records[(after.segment, after.offset)].payload == b"after the crash"
    assert len({seg for _, seg, _ in acked}) > 1  # the run crossed segment boundaries
