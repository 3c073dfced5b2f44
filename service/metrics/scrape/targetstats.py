"""`target-stats <wal dir> -j JOB -i INSTANCE`: series per metric name for one target, read from a WAL
(agentctl's "Metric cardinality" table, sorted by count descending)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence

import snappy

from service.metrics.proto.remote_pb2 import WriteRequest
from service.wal import read_records

WRITE_REQUEST = 1


def target_stats(directory: str, job: str, instance: str) -> list[tuple[str, int]]:
    if os.path.isdir(os.path.join(directory, "wal")):
        directory = os.path.join(directory, "wal")
    series: set[bytes] = set()
    names: Counter[str] = Counter()
    for record in read_records(directory):
        if record.type != WRITE_REQUEST:
            continue
        for ts in WriteRequest.FromString(snappy.uncompress(record.payload)).timeseries:
            labels = {label.name: label.value for label in ts.labels}
            if labels.get("job") != job or labels.get("instance") != instance:
                continue
            key = b"\xff".join(f"{k}\xfe{v}".encode() for k, v in sorted(labels.items()))
            if key not in series:
                series.add(key)
                names[labels.get("__name__", "")] += 1
    return sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scraping-service target-stats")
    parser.add_argument("directory")
    parser.add_argument("-j", "--job", required=True)
    parser.add_argument("-i", "--instance", required=True)
    args = parser.parse_args(list(argv))
    if not os.path.isdir(args.directory):
        print(f"{args.directory} is not a directory", file=sys.stderr)
        return 1
    rows = target_stats(args.directory, args.job, args.instance)
    width = max([len("Metric")] + [len(n) for n, _ in rows])
    print("Metric cardinality:\n")
    print(f"{'METRIC'.ljust(width)}  SERIES")
    for name, count in rows:
        print(f"{name.ljust(width)}  {count}")
    return 0
