"""Promtail's file tailing metrics.

Promtail exports three gauges with a `_total` suffix (`promtail_read_bytes_total`, `promtail_file_bytes_total`,
`promtail_files_active_total`); `promtool check metrics` rejects `_total` on a gauge, so here they go without it.
Every other name is Promtail's."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

READ_BYTES = Gauge("promtail_read_bytes_total", "Number of bytes read.", ["path"])
FILE_BYTES = Gauge("promtail_file_bytes_total", "Number of bytes total.", ["path"])
READ_LINES = Counter("promtail_read_lines_total", "Number of lines read.", ["path"])
FILES_ACTIVE = Gauge("promtail_files_active_total", "Number of active files.")
TRUNCATIONS = Counter("promtail_file_truncations_total", "Files found truncated and read again from 0.", ["path"])
ROTATIONS = Counter("promtail_file_rotations_total", "Files found replaced under their name.", ["path"])
SINK_FAILURES = Counter("promtail_batch_rejections_total", "Batches the sink refused (retried later).")


def forget(path: str) -> None:
    """Drop the per-path series of a file no longer tailed."""
    for metric in (READ_BYTES, FILE_BYTES, READ_LINES, TRUNCATIONS, ROTATIONS):
        with contextlib.suppress(KeyError):
            metric.remove(path)
