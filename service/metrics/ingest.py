"""Decode and check a received remote write body at C speed where it can be (docs/benchmarks.md).

Counts come from a view parsed and counted in C (service/metrics/views.py); each series' key is its
labels-only protobuf bytes, from a view holding labels as raw bytes (no label objects are built). Label
checks, which parse a series in full and touch every label in Python, run only for keys not seen before;
label sets churn slowly, so most requests check nothing. A request whose whole list of label sets equals
that of a request which passed before skips even the per-series lookups: a sender's batches repeat the same
series with new values, and serializing 2000 keys one by one was the receiver's largest Python cost
(profile in docs/benchmarks.md). The lists are compared as parsed views, by upb's structural equality in C
(no serialization), so the shortcut is exact. The body's wire format is checked as strictly as
Prometheus' receiver checks it (service/metrics/remote/validate.py): what it refuses is answered 400 here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

from google.protobuf.message import DecodeError

from service.metrics import views
from service.metrics.remote.codec import TooLarge, WriteStats, decompress_body
from service.metrics.remote.validate import check_series_key, check_write_request
from service.proto.remote_pb2 import TimeSeries
from service.proto.wire import CodecError

__all__ = ["CodecError", "IngestStats", "InvalidSeries", "SeriesChecker", "TooLarge"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_serialize = methodcaller("SerializeToString")
DEFAULT_SEEN_LIMIT = 500_000  # ≈430 B per key: ≈200 MiB at the limit, then the cache starts over
DEFAULT_KNOWN_SETS = 64  # whole-request label-set lists kept (≈1 MiB each for 2000 series); then start over
KNOWN_PER_SHAPE = 4  # lists kept per (series count, first key): older ones make way


class InvalidSeries(CodecError):
    """A series breaks the remote write rules for label sets (answer 400)."""


@dataclass(slots=True)
class IngestStats(WriteStats):
    """What one request carried, and how many of its label sets the checker had not seen before."""

    new_series: int = 0


def check_labels(ts: TimeSeries) -> None:
    """Remote write 1.0 label rules a receiver can enforce without rejecting what real senders send:
    at least one label, valid and unique names. Unsorted labels and a missing ``__name__`` are accepted,
    as Prometheus' own receiver accepts them."""
    names = [label.name for label in ts.labels]
    if not names:
        raise InvalidSeries("invalid series: empty label set")
    for name in names:
        if not _LABEL_NAME.fullmatch(name):
            raise InvalidSeries(f"invalid series {_show(ts)}: invalid label name {name!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidSeries(f"invalid series {_show(ts)}: label name {dup!r} is not unique")


def _show(ts: TimeSeries) -> str:
    text = "{" + ", ".join(f"{label.name}={label.value!r}" for label in ts.labels) + "}"
    return text if len(text) <= 300 else text[:300] + "...}"


class SeriesChecker:
    """Decodes bodies and checks each label set once; keeps the keys of label sets that passed."""

    def __init__(self, seen_limit: int = DEFAULT_SEEN_LIMIT, *, known_sets: int = DEFAULT_KNOWN_SETS) -> None:
        """``known_sets`` 0 turns the whole-request shortcut off (every key is looked up)."""
        self.seen_limit = seen_limit
        self.known_sets = known_sets
        self._seen: set[bytes] = set()
        # (series count, first series' key) -> KeyViews of whole requests whose label sets all passed
        self._known: dict[tuple[int, bytes], list[Any]] = {}
        self._known_count = 0

    def __len__(self) -> int:
        return len(self._seen)

    def decode(self, body: bytes, max_decoded_bytes: int) -> IngestStats:
        """Check ``body`` (snappy block of a WriteRequest). Raises TooLarge (413) or CodecError (400)."""
        if not body:
            raise CodecError("empty body: want a snappy-compressed WriteRequest")
        raw = decompress_body(body, max_decoded_bytes)
        check_write_request(raw)
        try:
            samples, exemplars, histograms, metadata = views.totals(raw)
            keys = views.series_keys(raw)
            series = len(keys.timeseries)
            shape = (series, keys.timeseries[0].SerializeToString()) if series and self.known_sets else None
            if shape is not None and any(keys == known for known in self._known.get(shape, ())):
                fresh: list[bytes] = []  # every one of these label sets passed the checks below before
            else:
                fresh = self._check_series(keys)
                if shape is not None:
                    self._remember(shape, keys)
        except DecodeError as exc:
            raise CodecError(f"protobuf: cannot parse WriteRequest: {exc}") from None
        return IngestStats(series=series, samples=samples, exemplars=exemplars, histograms=histograms,
                           metadata=metadata, decoded_bytes=len(raw), new_series=len(fresh))

    def _check_series(self, keys: Any) -> list[bytes]:
        """Check each label set not seen before (raises on the first that fails); returns those."""
        seen = self._seen
        fresh = [key for key in map(_serialize, keys.timeseries) if key not in seen]
        for key in fresh:
            check_series_key(key)
            check_labels(TimeSeries.FromString(key))  # new label sets only: parsed in full, checked
        if fresh:
            if len(seen) + len(fresh) > self.seen_limit:
                seen.clear()
            seen.update(fresh)
        return fresh

    def _remember(self, shape: tuple[int, bytes], keys: Any) -> None:
        if self._known_count >= self.known_sets:
            self._known.clear()
            self._known_count = 0
        known = self._known.setdefault(shape, [])
        if len(known) >= KNOWN_PER_SHAPE:
            known.pop(0)
            self._known_count -= 1
        known.append(keys)
        self._known_count += 1
