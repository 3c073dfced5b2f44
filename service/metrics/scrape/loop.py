"""One target's scrape loop: fetch, split, cache lookup, encode a WriteRequest, stale markers, report series.

Each scrape appends one snappy-compressed WriteRequest (the target's samples, stale markers for series that
went away, and the five report series) through `append`. A failed fetch or a malformed page appends no
samples, only stale markers for the previous scrape's series and `up` 0, as Prometheus does.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import math
import struct
import time
from collections.abc import Awaitable, Callable

import aiohttp
import snappy

from service.http.client import HTTPClient
from service.log import get_logger
from service.metrics.recordcounts import COUNTS, RecordCounts
from service.metrics.remote.codec import encode_labels
from service.metrics.scrape.cache import ScrapeCache, SeriesSyntaxError, merge_target_labels
from service.metrics.scrape.fastpage import Frames, build_fast
from service.metrics.scrape.parser import ACCEPT_HEADER, ParseError, is_openmetrics, split_samples
from service.metrics.scrape.target import Target
from service.proto.wire import VARINT, encode_varint
from service.tasks import cancel_and_wait

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
_STALE_BYTES = struct.pack("<Q", 0x7FF0000000000002)
_ZERO = b"\x00" * 8
_pack = struct.Struct("<d").pack
REPORT_NAMES = ("up", "scrape_duration_seconds", "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling", "scrape_series_added")
Append = Callable[[bytes], Awaitable[None]]
# Scrape loops wake on a shared grid of this many seconds (at most 1/100 of their interval): the loops due
# within one step start in one event-loop wakeup instead of one each. A node scraping 100 targets a second
# otherwise woke about twice per scrape, and on a busy machine each wakeup costs more than the scrape's own
# Python work (bench/target_sharding.py). The slots themselves (hash offsets, handoff) do not change.
WAKE_GRID = 0.05


def on_grid(now: float, delay: float, grid: float) -> float:
    """The first point of the grid at or after `now + delay` (the plain wake time; returned as it is
    without a grid)."""
    due = now + delay
    return math.ceil(due / grid) * grid if grid > 0 else due


class ScrapeError(Exception):
    """A scrape that failed: HTTP error, timeout, body too large, sample limit."""


class _Encoder:
    """Encodes single-sample TimeSeries fields for one scrape timestamp."""

    def __init__(self, ts_ms: int) -> None:
        tsf = b"\x10" + encode_varint(ts_ms) if ts_ms else b""
        self.tsf = tsf
        self.zero = b"\x12" + bytes((len(tsf),)) + tsf
        self.prefix = b"\x12" + bytes((9 + len(tsf),)) + b"\x09"

    def series(self, label_bytes: bytes, value: float) -> bytes:
        packed = _pack(value)
        sample = self.zero if packed == _ZERO else self.prefix + packed + self.tsf
        body = label_bytes + sample
        n = len(body)
        return b"\x0a" + (VARINT[n] if n < 16384 else encode_varint(n)) + body

    def stale(self, label_bytes: bytes) -> bytes:
        body = label_bytes + self.prefix + _STALE_BYTES + self.tsf
        n = len(body)
        return b"\x0a" + (VARINT[n] if n < 16384 else encode_varint(n)) + body


def report_labels(target_labels: dict[str, str]) -> list[bytes]:
    """The encoded label sets of the report series (``up``, ``scrape_duration_seconds``, ...) of a target.

    They differ only in ``__name__``, so the target's labels are sorted and encoded once, around where
    ``__name__`` goes: a loop is made per target at every instance start, and encoding five full label sets
    was a tenth of a start's CPU. A target carrying ``__name__`` itself takes the general merge."""
    if "__name__" in target_labels:
        return [encode_labels(sorted(merge_target_labels([("__name__", n)], target_labels, False).items()))
                for n in REPORT_NAMES]
    items = sorted((k, v) for k, v in target_labels.items() if v)
    cut = bisect.bisect_left(items, ("__name__", ""))
    before, after = encode_labels(items[:cut]), encode_labels(items[cut:])
    return [before + encode_labels((("__name__", n),)) + after for n in REPORT_NAMES]


def _explicit(label_bytes: bytes, value: float, ts_ms: int) -> bytes:
    return _Encoder(ts_ms).series(label_bytes, value)


class ScrapeLoop:
    """Scrapes one target every interval until stopped."""

    def __init__(self, target: Target, client: HTTPClient, append: Append, *, job: str, instance: str,
                 honor_labels: bool, honor_timestamps: bool, sample_limit: int, body_size_limit: int,
                 cache: ScrapeCache, offset_seed: int = 0, accept: str = ACCEPT_HEADER,
                 accept_encoding: str = "gzip") -> None:
        self.target = target
        self.accept = accept
        self.accept_encoding = accept_encoding
        self.client = client
        self.append = append
        self.job = job
        self.instance = instance
        self.honor_timestamps = honor_timestamps
        self.sample_limit = sample_limit
        self.body_size_limit = body_size_limit
        self.cache = cache
        self.offset_seed = offset_seed
        self.forced_error: str | None = None
        self._written = 0  # single-sample series in the last page built, and their highest explicit timestamp
        self._highest_explicit: int | None = None
        self.health = "unknown"
        self.last_error = ""
        self.last_scrape: float | None = None
        self.last_duration = 0.0
        self.scrapes = 0
        self._prev: set[bytes] = set()
        self._frames = Frames()  # per-series encodings for the fast path (fastpage.py)
        self._last_ok = 0  # samples in the last successful scrape
        self._next_at = 0.0  # monotonic time of the next scrape slot
        # Per-target sharding (sharding.py): the first slot (unix time) this loop may scrape, and the slot
        # from which another node scrapes the target (the loop ends before it, writing no stale markers).
        self.not_before = 0.0
        self.stop_at: float | None = None
        self._slot = 0.0  # unix time of the next scrape slot
        self._sleeping = False
        self._stale_written = False
        self._report = report_labels(target.labels)
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("scrape", instance=instance, job=job, target=target.url)

    # --- lifecycle ---------------------------------------------------------------------------------
    def offset(self, now: float) -> float:
        """Delay before the first scrape: spread over the interval by target hash, as Prometheus does."""
        interval = self.target.interval
        base = interval - now % interval
        offset = ((self.target.hash64() ^ self.offset_seed) % int(interval * 1e9)) / 1e9
        delay = base + offset
        return delay - interval if delay > interval else delay

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"scrape {self.target.url}")

    async def stop(self, write_stale: bool = True) -> None:
        """Stop the loop (or its pending end-of-run staleness); with write_stale, append stale markers for
        every series it last wrote now."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if write_stale and self.scrapes and not self._stale_written:
            await self._write_stale(int(time.time() * 1000))

    async def retire(self) -> None:
        """The target left discovery: stop scraping and write stale markers as Prometheus'
        endOfRunStaleness does, stamped with the next scrape slot and written one interval (+10%) after
        it, so a target re-created meanwhile is not marked stale (the pool then `stop`s this loop)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.scrapes:
            self._task = asyncio.get_running_loop().create_task(self._end_of_run(), name=f"stale {self.target.url}")

    @property
    def retiring(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _end_of_run(self) -> None:
        interval = self.target.interval
        await asyncio.sleep(max(0.0, self._next_at - time.monotonic()))
        stale_ms = int(time.time() * 1000)
        await asyncio.sleep(interval * 1.1)
        await self._write_stale(stale_ms)

    async def _write_stale(self, ts_ms: int) -> None:
        enc = _Encoder(ts_ms)
        out = [enc.stale(lb) for lb in self._prev] + [enc.stale(lb) for lb in self._report]
        self._prev = set()
        self._stale_written = True
        await self._append(out, len(out), ts_ms)

    def first_slot(self, wall: float) -> float:
        """The unix time of the first slot at or after `wall` and `not_before` (the previous owner of a
        moved target scrapes the slots before not_before)."""
        interval = self.target.interval
        slot = wall + self.offset(wall)
        if slot < self.not_before:
            slot += -((slot - self.not_before) // interval) * interval
        return slot

    async def _run(self) -> None:
        interval = self.target.interval
        wall = time.time()
        self._slot = self.first_slot(wall)
        delay = self._slot - wall
        self._next_at = time.monotonic() + delay
        if self._handed_off():
            return
        await self._sleep(delay)
        next_at = time.monotonic()
        while True:
            try:
                await self.scrape_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the loop; it is logged and the next scrape runs
                self._log.exception("scrape loop iteration failed")
            next_at += interval
            self._slot += interval
            now = time.monotonic()
            if next_at < now:  # fell behind: skip missed slots rather than bursting
                skip = ((now - next_at) // interval + 1) * interval
                next_at += skip
                self._slot += skip
            self._next_at = next_at
            if self._handed_off():
                return
            await self._sleep(next_at - now)

    async def _sleep(self, delay: float) -> None:
        """Sleep `delay` seconds, rounded up to the next point of the wake grid."""
        self._sleeping = True
        try:
            now = asyncio.get_running_loop().time()
            await asyncio.sleep(on_grid(now, delay, min(WAKE_GRID, self.target.interval / 100)) - now)
        finally:
            self._sleeping = False

    def _handed_off(self) -> bool:
        return self.stop_at is not None and self._slot >= self.stop_at - 1e-6

    def hand_off(self, stop_at: float) -> None:
        """The target moved to another node, which scrapes it from the slot at or after `stop_at` on: scrape
        the slots before it, then end without stale markers (the series go on from the other node)."""
        self.stop_at = stop_at
        self._stale_written = True
        task = self._task
        if task is not None and self._sleeping and self._slot and self._handed_off():
            task.cancel()  # asleep until a slot that is no longer ours

    @property
    def handing_off(self) -> bool:
        return self.stop_at is not None and self._task is not None and not self._task.done()

    # --- one scrape --------------------------------------------------------------------------------
    async def fetch(self) -> tuple[bytes, str]:
        session = await self.client.session()
        timeout = self.target.timeout
        headers = {"Accept": self.accept, "Accept-Encoding": self.accept_encoding,
                   "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}", **await self.client.auth_headers()}
        async with asyncio.timeout(timeout):
            async with session.get(self.target.url, headers=headers, **self.client.request_options()) as resp:
                if resp.status != 200:
                    raise ScrapeError(f"server returned HTTP status {resp.status} {resp.reason or ''}".rstrip())
                limit = self.body_size_limit
                if not limit:
                    body = await resp.read()
                else:
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise ScrapeError(f"body size limit exceeded ({limit} bytes)")
                        chunks.append(chunk)
                    body = b"".join(chunks)
                return body, resp.headers.get("Content-Type", "")

    async def scrape_once(self) -> None:
        start = time.time()
        ts_ms = int(start * 1000)
        enc = _Encoder(ts_ms)
        error = self.forced_error
        out: list[bytes] = []
        seen: set[bytes] = set()
        scraped = added = new = 0
        if error is None:
            try:
                body, content_type = await self.fetch()
                out, seen, scraped, added, new, error = self.build(body, is_openmetrics(content_type), enc)
            except ScrapeError as exc:
                error = str(exc)
            except TimeoutError:
                error = "context deadline exceeded"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                error = str(exc) or type(exc).__name__
            if error is not None:
                out, seen = [], set()  # the page's samples are rolled back; its counts are still reported
        series = self._written if out else 0
        highest = max(ts_ms, self._highest_explicit) if series and self._highest_explicit is not None else ts_ms
        if seen is not self._prev:  # the same set again (an unchanged page): nothing went stale
            gone = self._prev - seen
            series += len(gone)
            out.extend(map(enc.stale, gone))
        self._prev = seen
        duration = time.time() - start
        report = (0.0 if error else 1.0, duration, float(scraped), float(added), float(new))
        out.extend(enc.series(lb, v) for lb, v in zip(self._report, report, strict=True))
        self.health = "down" if error else "up"
        self.last_error = error or ""
        self.last_scrape = start
        self.last_duration = duration
        self.scrapes += 1
        await self._append(out, series + len(report), highest)

    async def _append(self, out: list[bytes], series: int, highest_ts_ms: int) -> None:
        """Append the record, noting what it carries (``series`` single-sample series, the highest of their
        timestamps) for the remote_write queues reading it back (see recordcounts)."""
        body = snappy.compress(b"".join(out))
        COUNTS.note(body, RecordCounts(series, 0, 0, 0, highest_ts_ms if series else 0), self._report[0])
        await self.append(body)

    def build(self, body: bytes, openmetrics: bool, enc: _Encoder
              ) -> tuple[list[bytes], set[bytes], int, int, int, str | None]:
        """Encoded TimeSeries of one page, the label bytes tracked for staleness, the report counts
        (samples scraped, samples after metric relabeling, new series) and the error failing the page.

        The counts follow Prometheus' scrapeLoop.append: a page failing part-way reports what was read
        before the error; a duplicate series counts as a sample (Prometheus appends it, and the receiver
        keeps the first) but only the first is written; a series is new when it was not in the previous
        successful scrape, and only while the sample limit is not reached.
        """
        cache = self.cache
        if not openmetrics:
            fast = build_fast(body, cache, self._frames, enc.tsf)
            if fast is not None and not (self.sample_limit and fast[3] > self.sample_limit):
                data, seen, keys, written = fast
                if len(cache.entries) > len(keys):  # entries this page did not show: forget them
                    cache.keep(keys)
                self._frames.confirm(cache.generation)
                self._last_ok = len(keys)
                self._written, self._highest_explicit = written, None
                return [data], seen, len(keys), written, 0, None
        get = cache.get
        out: list[bytes] = []
        emit = out.append
        seen: set[bytes] = set()
        remember = seen.add
        explicit: list[bytes] = []
        highest_explicit: int | None = None
        honor_ts = self.honor_timestamps
        series = enc.series
        limit = self.sample_limit
        scraped = dups = new = 0
        error = None
        try:
            for key, value, ts in split_samples(body, openmetrics):
                scraped += 1
                lb = get(key)
                if lb is None:
                    try:
                        lb = cache.resolve(key, openmetrics)
                    except SeriesSyntaxError:
                        scraped -= 1  # Prometheus' parser fails on this line before counting it
                        raise
                    if lb and (not limit or len(out) + dups < limit):
                        new += 1
                if not lb:
                    continue  # dropped by metric relabeling
                if lb in seen:
                    dups += 1  # a duplicate series: counted, not written (the first one wins)
                    continue
                remember(lb)
                if ts is not None and honor_ts:
                    explicit.append(lb)
                    emit(_explicit(lb, value, ts))
                    if highest_explicit is None or ts > highest_explicit:
                        highest_explicit = ts
                else:
                    emit(series(lb, value))
        except ParseError as exc:
            error = str(exc)
        added = len(out) + dups
        if error is None and limit and added > limit:
            error = f"sample limit exceeded (number of samples: {added}, limit: {limit})"
        if error is None:
            if len(cache.entries) > scraped - dups:  # entries this page did not show: forget them
                cache.keep(key for key, _, _ in split_samples(body, openmetrics))
            self._last_ok = scraped
        else:
            cache.trim(self._last_ok)
        if explicit:
            seen.difference_update(explicit)  # series with their own timestamps get no stale markers
        self._written, self._highest_explicit = len(out), highest_explicit  # what the record will carry
        return out, seen, scraped, added, new, error

    def state(self) -> dict[str, object]:
        """This target as the targets API shows it."""
        last = (datetime.datetime.fromtimestamp(self.last_scrape, datetime.UTC)
                .isoformat().replace("+00:00", "Z") if self.last_scrape else "0001-01-01T00:00:00Z")
        return {
            "instance": self.instance,
            "target_group": self.job,
            "endpoint": self.target.url,
            "state": self.health,
            "discovered_labels": self.target.discovered_labels,
            "labels": self.target.labels,
            "last_scrape": last,
            "scrape_duration_ms": int(self.last_duration * 1000),
            "scrape_error": self.last_error,
        }
