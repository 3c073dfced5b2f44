"""`target-stats <wal dir> -j JOB -i INSTANCE`: series per metric name for one target, read from a WAL
(agentctl's "Metric cardinality" table, sorted by count descending)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import snappy
from google.protobuf.message import DecodeError

from service.metrics.records import WRITE_REQUEST
from service.proto.remote_pb2 import WriteRequest
from service.wal import read_records


@dataclass
class TargetStats:
    """Series per metric name of one target, and what the WAL held besides (to explain an empty answer)."""

    rows: list[tuple[str, int]] = field(default_factory=list)
    records: int = 0
    undecodable: int = 0
    jobs: set[str] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)


def target_stats(directory: str, job: str, instance: str) -> list[tuple[str, int]]:
    return collect(directory, job, instance).rows


def collect(directory: str, job: str, instance: str) -> TargetStats:
    if os.path.isdir(os.path.join(directory, "wal")):
        directory = os.path.join(directory, "wal")
    out = TargetStats()
    series: set[bytes] = set()
    names: Counter[str] = Counter()
    for record in read_records(directory):
        if record.type != WRITE_REQUEST:
            continue
        out.records += 1
        try:
            request = WriteRequest.FromString(snappy.uncompress(record.payload))
        except (snappy.UncompressError, DecodeError):
            out.undecodable += 1
            continue
        for ts in request.timeseries:
            labels = {label.name: label.value for label in ts.labels}
            out.jobs.add(labels.get("job", ""))
            if labels.get("job") == job:
                out.instances.add(labels.get("instance", ""))
            if labels.get("job") != job or labels.get("instance") != instance:
                continue
            key = b"\xff".join(f"{k}\xfe{v}".encode() for k, v in sorted(labels.items()))
            if key not in series:
                series.add(key)
                names[labels.get("__name__", "")] += 1
    out.rows = sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))
    return out


def main(argv: Sequence[str]) -> int:
    from service.cliparser import Parser

    parser = Parser(prog="scraping-service target-stats",
                    description="Series per metric name for one target (job and instance labels), read from "
                                "an instance WAL. Exit 1 when the WAL holds no series of that target.")
    parser.add_argument("directory", help="one metrics instance's WAL directory")
    parser.add_argument("-j", "--job", required=True)
    parser.add_argument("-i", "--instance", required=True)
    parser.add_argument("--json", action="store_true", help="one JSON object: {metrics: {name: series}, total}")
    args = parser.parse_args(list(argv))
    if not os.path.isdir(args.directory):
        print(f"error: {args.directory} is not a directory", file=sys.stderr)
        return 1
    try:
        stats = collect(args.directory, args.job, args.instance)
    except OSError as exc:
        print(f"error: cannot read {exc.filename or args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not stats.rows:
        if not stats.records:
            print(f"error: no metrics WAL records in {args.directory}", file=sys.stderr)
        elif args.job not in stats.jobs:
            print(f"error: no series with job={args.job!r} in {args.directory}; jobs: "
                  f"{', '.join(sorted(stats.jobs)) or '-'}", file=sys.stderr)
        else:
            print(f"error: no series with job={args.job!r} instance={args.instance!r}; instances of that job: "
                  f"{', '.join(sorted(stats.instances)) or '-'}", file=sys.stderr)
        return 1
    total = sum(n for _, n in stats.rows)
    if args.json:
        print(json.dumps({"job": args.job, "instance": args.instance, "metrics": dict(stats.rows), "total": total}))
        return 0
    width = max([len("METRIC")] + [len(n) for n, _ in stats.rows])
    print("Metric cardinality:\n")
    print(f"{'METRIC'.ljust(width)}  SERIES")
    for name, count in stats.rows:
        print(f"{name.ljust(width)}  {count}")
    print(f"{'TOTAL'.ljust(width)}  {total}")
    return 0
