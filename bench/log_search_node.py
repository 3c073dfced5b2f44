"""The store's cost on the real push path: a node subprocess with `search` on and off, protobuf pushes of
1000-line batches from 16 concurrent connections (wrk with a Lua body script), acknowledged entries/s.

Each round starts a fresh node for each setting (off, then on) so both are measured in the same run; with the
store on, the bench then waits until the store holds every acknowledged entry and reports the time that took
and any entries the store dropped (its write queue is bounded), so a store that falls behind cannot look cheap.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import snappy

from service.proto.push_pb2 import PushRequest
from tests.helpers.node_process import NodeProcess, wait_for

LINES, CONNS, BODIES = 1000, 16, 16
WORDS = ["GET", "POST", "PUT", "DELETE", "user", "order", "payment", "cache", "session", "token", "request",
         "response", "upstream", "backend", "worker", "queue", "retry", "connection", "database", "query", "index",
         "shard", "replica", "leader", "follower"]
LEVELS = ["info"] * 80 + ["warn"] * 12 + ["error"] * 6 + ["fatal"] + ["debug"]

LUA = """
local bodies = {}
local i = 0
init = function(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb")); bodies[#bodies + 1] = f:read("*a"); f:close()
  end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/loki/api/v1/push", {["Content-Type"] = "application/x-protobuf"}, bodies[i])
end
"""


def proto_bodies(directory: Path, now_s: int) -> list[Path]:
    """BODIES snappy PushRequests of LINES lines over 20 containers (5 streams each), varied words."""
    rng = random.Random(2)
    paths = []
    for b in range(BODIES):
        req = PushRequest()
        streams = {}
        for i in range(LINES):
            c = (b * LINES + i) % 20
            s = streams.get(c)
            if s is None:
                s = streams[c] = req.streams.add()
                s.labels = f'{{container="svc-{c:02d}", job="bench", stream="{"stderr" if c % 10 == 7 else "stdout"}"}}'
            e = s.entries.add()
            e.timestamp.seconds, e.timestamp.nanos = now_s, b * LINES + i
            e.line = (f'level={rng.choice(LEVELS)} msg="{" ".join(rng.choices(WORDS, k=6))}" id={b * LINES + i} '
                      f"latency_ms={rng.randint(1, 900)}")
        path = directory / f"body{b}.bin"
        path.write_bytes(snappy.compress(req.SerializeToString()))
        paths.append(path)
    return paths


def node_yaml(tmp: Path, search: bool) -> str:
    return f"""
metrics: {{wal_directory: {tmp}/wal}}
logs:
  positions_directory: {tmp}/pos
  configs:
  - name: default
    search: {{enabled: {"true" if search else "false"}, retention: 30d, max_size: 20GiB}}
"""


def wrk(port: int, seconds: float, script: Path, bodies: list[Path]) -> tuple[int, int, float]:
    """(requests, non-2xx responses, seconds) of one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{seconds:.0f}s", "--timeout", "30s", "-s", str(script),
                          f"http://127.0.0.1:{port}", "--", *map(str, bodies)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    assert m, out
    took = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(m.group(1)), int(bad.group(1)) if bad else 0, took


def store_state(node: NodeProcess) -> tuple[int, int, int]:
    """(entries in the store, queued, WAL bytes not yet indexed) from the node's API."""
    total = node.get("/api/logs/search?limit=1").json()["data"]["total"]
    st = node.get("/api/status").json()["data"]["store"]
    return total, st["queuedEntries"], st["indexer"]["lagBytes"]


def run_node(seconds: float, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="log-search-node-bench-"))
    try:
        script = tmp / "push.lua"
        script.write_text(LUA)
        bodies = proto_bodies(tmp, int(time.time()))
        print(f"\nreal push path: node subprocess, protobuf pushes of {LINES} lines, {CONNS} connections (wrk), "
              f"{seconds:.0f}s per setting, {rounds} round(s)")
        results: dict[bool, list[float]] = {False: [], True: []}
        for r in range(rounds):
            for search in (False, True):
                work = tmp / f"r{r}-{int(search)}"
                node = NodeProcess(work, node_yaml(work, search)).start()
                try:
                    reqs, bad, took = wrk(node.port, seconds, script, bodies)
                    acked = (reqs - bad) * LINES
                    rate = acked / took
                    results[search].append(rate)
                    line = (f"  round {r + 1} store {'on ' if search else 'off'}: {rate:10,.0f} entries/s acked "
                            f"({acked:,} entries, {bad} refused)")
                    if search:
                        t0 = time.monotonic()
                        def caught_up(n: NodeProcess = node, a: int = acked) -> bool:
                            total, queued, lag = store_state(n)
                            return total >= a and queued == 0 and lag == 0

                        wait_for(caught_up, 600, interval=0.5, what="store caught up")
                        total, _, _ = store_state(node)
                        line += (f"; store holds {total:,}, caught up "
                                 f"{time.monotonic() - t0:.1f}s after the pushes ended")
                    print(line, flush=True)
                finally:
                    node.stop()
        off = max(results[False])
        on = max(results[True])
        print(f"best of rounds: store off {off:,.0f} entries/s, store on {on:,.0f} entries/s "
              f"→ cost {100 * (1 - on / off):.1f}% of push throughput (target ≤ 20%)")
        print(json.dumps({"node_off": off, "node_on": on}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
