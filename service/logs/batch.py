"""A batch of WAL records on its way to one Loki endpoint: one open sub-batch per tenant.

Sizes count decompressed PushRequest bytes (lines, metadata and the label strings of each record), which
is close to Promtail's count of line bytes and costs nothing to compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import snappy

from service.logs.labels import format_labels, parse_labels
from service.logs.record import decode_record
from service.proto.push_pb2 import PushRequest
from service.wal import Position, Record


@dataclass
class TenantBatch:
    parts: list[bytes] = field(default_factory=list)
    entries: int = 0
    size: int = 0


class Batch:
    def __init__(self) -> None:
        self.tenants: dict[str, TenantBatch] = {}
        self.size = 0
        self.end: Position | None = None
        self.created: float = 0.0

    def __bool__(self) -> bool:
        return self.end is not None

    def add(self, rec: Record) -> None:
        tenant, entries, body = decode_record(rec.payload)
        raw = snappy.uncompress(body)
        tb = self.tenants.get(tenant)
        if tb is None:
            tb = self.tenants[tenant] = TenantBatch()
        tb.parts.append(raw)
        tb.entries += entries
        tb.size += len(raw)
        self.size += len(raw)
        self.end = rec.end


class ExternalLabels:
    """Merge ``external_labels`` under each stream's labels (the stream's win), cached per label string."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)
        self._cache: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.labels)

    def rewrite(self, raw: bytes) -> bytes:
        req = PushRequest.FromString(raw)
        for stream in req.streams:
            out = self._cache.get(stream.labels)
            if out is None:
                merged = {**self.labels, **parse_labels(stream.labels)}
                out = format_labels(merged)
                if len(self._cache) > 65536:
                    self._cache.clear()
                self._cache[stream.labels] = out
            stream.labels = out
        return req.SerializeToString()


def encode_tenant_batch(tb: TenantBatch, external: ExternalLabels) -> bytes:
    """The snappy-block body to POST for one tenant's part of a batch."""
    raw = b"".join(tb.parts)
    if external:
        raw = external.rewrite(raw)
    return snappy.compress(raw)
