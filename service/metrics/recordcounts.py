"""What a WAL record carries, noted by the writer that built it, so its senders need not parse it back.

A remote_write queue must know each record's sample count (to cut batches) and highest sample timestamp (for
its gauges). Reading them back from the stored bytes costs two protobuf parses per record (about 0.5 ms for
a 2000-series scrape), the largest item of the sending path. The scrape loop knows both for free when it
encodes the record, so it notes them here before appending; the queue reading the record back finds them.

Keyed by the stored payload bytes themselves: the counts are a function of those bytes, so a hit can never
be wrong, whichever instance, WAL or restart the record came from, and nothing on disk changes (records
written before, or by a writer that notes nothing, such as the /write receiver, are parsed as before). The
table is bounded by the bytes it holds; a queue too far behind to find an entry parses the record.

A note also names the record's *owner*: the label bytes of its target's ``up`` series. Every record of one
scrape target has the same owner, and records of different targets hold different series (their target
labels differ; two targets writing one series would interleave its samples out of order whatever the
sender does). So a queue that must split a batch across shards may split it by owner, whole records at a
time, instead of walking every series (see ``shards.split_by_owner``).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

MAX_BYTES = 8 << 20  # payload bytes kept referenced: a queue reads a record within ms of its fsync


class RecordCounts(NamedTuple):
    """What one record's WriteRequest carries (as ``service.metrics.remote.batch.count`` reports it)."""

    samples: int
    exemplars: int
    histograms: int
    metadata: int
    highest_ts_ms: int


class Note(NamedTuple):
    counts: RecordCounts
    owner: bytes  # the target whose scrape wrote the record


class CountTable:
    """Counts of recently written payloads, oldest evicted first once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[bytes, Note] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # scrape loops and queues may run in different threads of a process

    def note(self, payload: bytes, counts: RecordCounts, owner: bytes) -> None:
        if len(payload) > self.max_bytes:
            return
        with self._lock:
            if payload in self._entries:
                return
            self._entries[payload] = Note(counts, owner)
            self._bytes += len(payload)
            while self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                self._bytes -= len(oldest)

    def get(self, payload: bytes) -> Note | None:
        if type(payload) is not bytes:  # a view of a read buffer: not a key (and not worth a copy)
            return None
        return self._entries.get(payload)

    def __len__(self) -> int:
        return len(self._entries)


COUNTS = CountTable()  # one per process: entries are keyed by content, so sharing them is safe
