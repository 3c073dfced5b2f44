"""A node file that runs named instances with no scrape configs, and the remote_write request shape."""

from __future__ import annotations

from pathlib import Path

WRITE = "/agent/api/v1/metrics/instance/{}/write"


RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


def static_config(wal_dir: Path, names: list[str], extra: str = "") -> str:
    lines = ["server:", "  log_level: warn", "metrics:", f"  wal_directory: {wal_dir}", "  global:",
             "    scrape_interval: 15s", "  configs:"]
    lines += [f"  - name: {n!r}" for n in names]
    return "\n".join(lines) + "\n" + extra
