"""`scraping-service wal-stats DIR`: what a metrics instance WAL holds, decoded (read-only).

DIR is either one instance's WAL directory or the node's `wal_directory` root; for the root, every
subdirectory that holds WAL segments is reported in its own block.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import snappy
from google.protobuf.message import DecodeError

from service.metrics import records
from service.metrics.proto.remote_pb2 import WriteRequest
from service.wal import Record, WALStats, wal_stats
from service.wal.segment import list_segments


@dataclass
class InstanceWALStats:
    """The WAL's own stats plus what its WriteRequest records carried."""

    wal: WALStats
    samples: int = 0
    exemplars: int = 0
    histograms: int = 0
    metadata: int = 0
    undecodable: int = 0
    series: set[bytes] = field(default_factory=set)
    oldest_sample_ms: int | None = None
    newest_sample_ms: int | None = None


def instance_wal_stats(directory: str) -> InstanceWALStats:
    """Read every valid record of ``directory``; type-1 records are decompressed and parsed."""
    out = InstanceWALStats(WALStats(directory))

    def on_record(rec: Record) -> None:
        if rec.type != records.WRITE_REQUEST:
            return
        try:
            request = WriteRequest.FromString(snappy.uncompress(rec.payload))
        except (snappy.UncompressError, DecodeError):
            out.undecodable += 1
            return
        out.metadata += len(request.metadata)
        for ts in request.timeseries:
            stamps = [s.timestamp for s in ts.samples]
            out.samples += len(stamps)
            out.exemplars += len(ts.exemplars)
            out.histograms += len(ts.histograms)
            if stamps:
                lo, hi = min(stamps), max(stamps)
                if out.oldest_sample_ms is None or lo < out.oldest_sample_ms:
                    out.oldest_sample_ms = lo
                if out.newest_sample_ms is None or hi > out.newest_sample_ms:
                    out.newest_sample_ms = hi
            labels = sorted((label.name, label.value) for label in ts.labels)
            out.series.add(repr(labels).encode())

    out.wal = wal_stats(directory, on_record)
    return out


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z ({ms})"


def render(stats: InstanceWALStats) -> str:
    wal = stats.wal
    lines = [
        f"WAL: {wal.directory}",
        f"  segments: {len(wal.segments)}"
        + (f" ({wal.segments[0].number}..{wal.segments[-1].number})" if wal.segments else ""),
        f"  records: {wal.records} ({wal.bytes} bytes)"
        + "".join(f", type {t}: {n}" for t, n in sorted(wal.records_by_type.items())),
        f"  samples: {stats.samples}",
        f"  series: {len(stats.series)}",
        f"  exemplars: {stats.exemplars}",
        f"  histograms: {stats.histograms}",
        f"  metadata: {stats.metadata}",
        f"  oldest record appended: {_time(wal.oldest_ms)}",
        f"  newest record appended: {_time(wal.newest_ms)}",
        f"  oldest sample: {_time(stats.oldest_sample_ms)}",
        f"  newest sample: {_time(stats.newest_sample_ms)}",
    ]
    if stats.undecodable:
        lines.append(f"  undecodable records: {stats.undecodable}")
    for corruption in wal.corruptions:
        lines.append(f"  corruption: {corruption}")
    lines.append(f"  markers: {len(wal.markers)}")
    for consumer, pos in sorted(wal.markers.items()):
        lines.append(f"    {consumer}: segment {pos.segment} offset {pos.offset}")
    for seg in wal.segments:
        lines.append(f"  segment {seg.number}: {seg.records} records, {seg.bytes} bytes")
    return "\n".join(lines)


def wal_dirs(path: str) -> list[str]:
    """``path`` itself when it holds segments, else its subdirectories that do (a wal_directory root)."""
    if list_segments(path):
        return [path]
    found = []
    for entry in sorted(os.listdir(path)):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub) and list_segments(sub):
            found.append(sub)
    return found


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scraping-service wal-stats",
                                     description="Summarise an instance WAL, or every WAL under a root.")
    parser.add_argument("dir", help="an instance WAL directory or the node's wal_directory")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"error: {args.dir} is not a directory", file=sys.stderr)
        return 1
    dirs = wal_dirs(args.dir)
    if not dirs:
        print(f"no WAL segments in {args.dir} or its subdirectories", file=sys.stderr)
        return 1
    print("\n\n".join(render(instance_wal_stats(d)) for d in dirs))
    return 0
