"""CPU cost of the push path inside the node, without HTTP or the WAL: ``PushRules.ingest`` (decode,
rules, the bytes to store) per scenario of bench/logs_push.py, on one core. Prints entries/s and MiB/s of
line bytes per CPU second. ``--profile`` prints a cProfile of each scenario instead.

    /work/main/.venv/bin/python bench/logs_ingest_cpu.py [--profile] [scenario ...]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.logs_push import JSON, LINES, PROTO, bodies
from service.logs.push import DEFAULT_MAX_MESSAGE_SIZE, PushRules
from service.relabel import RelabelConfig


def scenarios() -> dict[str, tuple[bytes, str, PushRules]]:
    proto, js, _ = bodies(False)
    proto_m, js_m, _ = bodies(True)
    keep = PushRules(use_incoming_timestamp=True)
    rules = PushRules({"source": "bench"}, [RelabelConfig(source_labels=["host"], target_label="node",
                                                          regex="h(.*)", replacement="node-$1")])
    return {"proto": (proto, PROTO, keep), "proto-stamp": (proto, PROTO, PushRules()),
            "proto-rules": (proto, PROTO, rules), "proto-rules-meta": (proto_m, PROTO, rules),
            "json": (js, JSON, keep), "json-meta": (js_m, JSON, keep), "json-stamp": (js, JSON, PushRules()),
            "json-rules": (js, JSON, rules), "json-rules-meta": (js_m, JSON, rules)}


def run(body: bytes, ctype: str, rules: PushRules, seconds: float = 1.0) -> int:
    n = 0
    stop = time.process_time() + seconds
    while time.process_time() < stop:
        for _ in range(20):
            rules.ingest(body, ctype, None, DEFAULT_MAX_MESSAGE_SIZE)
        n += 20
    return n


def main() -> None:
    args = sys.argv[1:]
    profile = "--profile" in args
    chosen = [a for a in args if not a.startswith("--")]
    _, _, line_bytes = bodies(False)
    for name, (body, ctype, rules) in scenarios().items():
        if chosen and name not in chosen:
            continue
        if profile:
            prof = cProfile.Profile()
            prof.runcall(run, body, ctype, rules)
            print(f"--- {name}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
            continue
        run(body, ctype, rules, 0.2)
        t0 = time.process_time()
        pushes = run(body, ctype, rules)
        dt = time.process_time() - t0
        print(f"{name:16s} {pushes * LINES / dt:9.0f} entries/s {pushes * line_bytes / dt / (1 << 20):6.1f} MiB/s "
              f"per CPU second")


if __name__ == "__main__":
    main()
