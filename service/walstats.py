"""`scraping-service wal-stats DIR`: what metrics and logs WALs hold, decoded (read-only).

DIR is either one WAL directory or the node's `wal_directory` root; for the root, every WAL under it (metrics
instances, and logs instances under `logs/`) is reported in its own block, then the totals. `--json` gives
the same as one object. A WAL with corrupt bytes is reported and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import snappy
from google.protobuf.message import DecodeError

from service.logs.record import RECORD_TYPE as LOGS_RECORD
from service.logs.record import decode_record as decode_logs_record
from service.metrics import records
from service.proto.remote_pb2 import WriteRequest
from service.wal import Record, WALStats, wal_stats
from service.wal.reader import Corruption
from service.wal.segment import list_segments


@dataclass
class InstanceWALStats:
    """The WAL's own stats plus what its WriteRequest (metrics) and push (logs) records carried."""

    wal: WALStats
    kind: str = "metrics"
    entries: int = 0
    tenants: set[str] = field(default_factory=set)
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
        if rec.type == LOGS_RECORD:
            _logs_record(out, rec.payload)
            return
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
    if out.entries or os.path.basename(os.path.dirname(os.path.abspath(directory))) == "logs":
        out.kind = "logs"
    return out


def _logs_record(out: InstanceWALStats, payload: bytes) -> None:
    try:
        tenant, entries, _ = decode_logs_record(payload)
    except (ValueError, UnicodeDecodeError):  # struct.error is a ValueError
        out.undecodable += 1
        return
    out.entries += entries
    out.tenants.add(tenant)


def describe(corruption: Corruption) -> str:
    return f"segment {corruption.segment} at offset {corruption.offset}: {corruption.reason}"


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z ({ms})"


def render(stats: InstanceWALStats) -> str:
    wal = stats.wal
    lines = [
        f"WAL: {wal.directory} ({stats.kind})",
        f"  segments: {len(wal.segments)}"
        + (f" ({wal.segments[0].number}..{wal.segments[-1].number})" if wal.segments else ""),
        f"  records: {wal.records} ({wal.bytes} bytes)"
        + "".join(f", type {t}: {n}" for t, n in sorted(wal.records_by_type.items())),
    ]
    if stats.kind == "logs":
        lines += [f"  entries: {stats.entries}", f"  tenants: {', '.join(sorted(stats.tenants)) or '-'}"]
    else:
        lines += [f"  samples: {stats.samples}", f"  series: {len(stats.series)}",
                  f"  exemplars: {stats.exemplars}", f"  histograms: {stats.histograms}",
                  f"  metadata: {stats.metadata}"]
    lines += [
        f"  oldest record appended: {_time(wal.oldest_ms)}",
        f"  newest record appended: {_time(wal.newest_ms)}",
    ]
    if stats.kind != "logs":
        lines += [f"  oldest sample: {_time(stats.oldest_sample_ms)}",
                  f"  newest sample: {_time(stats.newest_sample_ms)}"]
    if stats.undecodable:
        lines.append(f"  undecodable records: {stats.undecodable}")
    for corruption in wal.corruptions:
        lines.append(f"  corruption: {describe(corruption)}")
    lines.append(f"  markers: {len(wal.markers)}")
    for consumer, pos in sorted(wal.markers.items()):
        lines.append(f"    {consumer}: segment {pos.segment} offset {pos.offset}")
    for seg in wal.segments:
        lines.append(f"  segment {seg.number}: {seg.records} records, {seg.bytes} bytes")
    return "\n".join(lines)


def as_dict(stats: InstanceWALStats) -> dict[str, Any]:
    wal = stats.wal
    out: dict[str, Any] = {
        "directory": wal.directory, "kind": stats.kind, "segments": [s.number for s in wal.segments],
        "records": wal.records, "bytes": wal.bytes,
        "records_by_type": {str(t): n for t, n in sorted(wal.records_by_type.items())},
        "oldest_record_ms": wal.oldest_ms, "newest_record_ms": wal.newest_ms,
        "undecodable_records": stats.undecodable,
        "corruptions": [{"segment": c.segment, "offset": c.offset, "reason": c.reason} for c in wal.corruptions],
        "markers": {k: {"segment": p.segment, "offset": p.offset} for k, p in sorted(wal.markers.items())},
    }
    if stats.kind == "logs":
        out.update(entries=stats.entries, tenants=sorted(stats.tenants))
    else:
        out.update(samples=stats.samples, series=len(stats.series), exemplars=stats.exemplars,
                   histograms=stats.histograms, metadata=stats.metadata,
                   oldest_sample_ms=stats.oldest_sample_ms, newest_sample_ms=stats.newest_sample_ms)
    return out


def totals(all_stats: Sequence[InstanceWALStats]) -> dict[str, int]:
    return {
        "wals": len(all_stats),
        "segments": sum(len(s.wal.segments) for s in all_stats),
        "records": sum(s.wal.records for s in all_stats),
        "bytes": sum(s.wal.bytes for s in all_stats),
        "samples": sum(s.samples for s in all_stats),
        "series": sum(len(s.series) for s in all_stats),
        "entries": sum(s.entries for s in all_stats),
        "corruptions": sum(len(s.wal.corruptions) for s in all_stats),
    }


def wal_dirs(path: str, depth: int = 3) -> list[str]:
    """``path`` itself when it holds segments, else the WALs below it (``<root>/<instance>``,
    ``<root>/logs/<instance>``), in name order."""
    if list_segments(path):
        return [path]
    if depth == 0:
        return []
    found = []
    for entry in sorted(os.listdir(path)):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub) and not os.path.islink(sub):
            found.extend(wal_dirs(sub, depth - 1))
    return found


def main(argv: Sequence[str]) -> int:
    from service.cliparser import Parser

    parser = Parser(prog="scraping-service wal-stats",
                    description="Summarise a WAL, or every metrics and logs WAL under a wal_directory. "
                                "Exit 1 when a WAL is corrupt or there is none.")
    parser.add_argument("dir", help="a WAL directory or the node's wal_directory")
    parser.add_argument("--json", action="store_true", help="one JSON object: {wals: [...], totals: {...}}")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"error: {args.dir} is not a directory", file=sys.stderr)
        return 1
    try:
        dirs = wal_dirs(args.dir)
        if not dirs:
            print(f"error: no WAL segments in {args.dir} or below it", file=sys.stderr)
            return 1
        all_stats = [instance_wal_stats(d) for d in dirs]
    except OSError as exc:
        print(f"error: cannot read {exc.filename or args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"wals": [as_dict(s) for s in all_stats], "totals": totals(all_stats)}, indent=1))
    else:
        blocks = [render(s) for s in all_stats]
        if len(all_stats) > 1:
            blocks.append("total: " + ", ".join(f"{k} {v}" for k, v in totals(all_stats).items()))
        print("\n\n".join(blocks))
    corrupt = [s for s in all_stats if s.wal.corruptions]
    for stats in corrupt:
        for corruption in stats.wal.corruptions:
            print(f"error: WAL {stats.wal.directory} is corrupt: {describe(corruption)}", file=sys.stderr)
    return 1 if corrupt else 0
