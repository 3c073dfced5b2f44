"""Ingest worker processes (`metrics.ingest_workers`): the same answers and the same WAL records, byte for byte,
as decoding in the serving process, and every acknowledged write survives kill -9 with the workers on."""

from __future__ import annotations

import asyncio
import http.client
import os
import pickle
import signal
import threading
from pathlib import Path

import pytest
import snappy

from bench.codec import build_series
from service.config.errors import ConfigError
from service.metrics.decode_pool import DecodePool, cpu_limit, default_workers
from service.metrics.ingest import CodecError, SeriesChecker, TooLarge
from service.settings import parse_node_config
from service.wal import wal_dir_for
from service.wal.reader import read_records
from tests.helpers.e2e_helpers import metric_sum
from tests.helpers.node_process import NodeProcess
from tests.helpers.polling import wait_for
from tests.helpers.rw_payloads import write_body

WRITE = "/agent/api/v1/metrics/instance/demo/write"
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
DECODES = "agent_remote_write_receiver_worker_decodes_total"
SERIES = build_series(600)  # ≈70 KB snappy: over the pool's 32 KiB threshold


def start(base: Path, workers: int) -> NodeProcess:
    cfg = (f"server:\n  log_level: warn\nmetrics:\n  wal_directory: {base / 'wal'}\n"
           f"  ingest_workers: {workers}\n  configs:\n  - name: demo\n")
    return NodeProcess(base, cfg).start()


def records(node: NodeProcess) -> list[tuple[int, bytes]]:
    return [(r.type, r.payload) for r in read_records(wal_dir_for(str(node.workdir / "wal"), "demo"))]


def bodies() -> list[bytes]:
    """Large and small, valid and refused, repeated label sets and new ones."""
    bad_name = [*SERIES[:599], [("__name__", "m"), ("bad-name", "x")]]
    return [
        write_body(SERIES, ts_ms=1_700_000_000_000, value=1.0),
        write_body(SERIES, ts_ms=1_700_000_001_000, value=2.0),  # known label sets, new values
        write_body(bad_name),  # large, one label set refused
        write_body(SERIES[:5]),  # small: decoded in the serving process
        b"\x80\x80\x80\x80\x08" + b"\x00" * (40 << 10),  # declares 2 GiB decoded: 413 from the preamble
        snappy.compress(os.urandom(50 << 10)),  # large, not a WriteRequest
        b"x" * (40 << 10),  # not snappy
        write_body([*SERIES[:599], [("__name__", "new"), ("a", "b")]], value=3.0),  # one new series
    ]


def children(node: NodeProcess) -> list[int]:
    assert node.proc is not None
    return [int(p) for p in Path(f"/proc/{node.proc.pid}/task/{node.proc.pid}/children").read_text().split()]


def wait_gone(pids: list[int]) -> None:
    """Every pid exits (or is a zombie nobody reaps); one that does not is killed, and the test fails."""
    for pid in pids:
        try:
            wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists()
                     or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 30,
                     what=f"ingest worker {pid} to exit")
        finally:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def workers_running(node: NodeProcess) -> None:
    """Send large bodies until one is decoded by a worker (workers start with the first one)."""
    body = write_body(SERIES, ts_ms=1_600_000_000_000)

    def decoded_by_worker() -> bool:
        assert node.request("POST", WRITE, body, headers=HEADERS).status == 204
        return metric_sum(node, DECODES) > 0

    wait_for(decoded_by_worker, 60, interval=0.2, what="an ingest worker decoding")


@pytest.mark.slow
def test_worker_path_answers_and_wal_records_match_the_plain_path(tmp_path: Path) -> None:
    plain, pooled = start(tmp_path / "plain", 0), start(tmp_path / "pooled", 2)
    try:
        workers_running(pooled)
        warmups = len(records(pooled))
        for _ in range(warmups):  # the same records in the same order on both
            assert plain.request("POST", WRITE, write_body(SERIES, ts_ms=1_600_000_000_000),
                                 headers=HEADERS).status == 204
        before = metric_sum(pooled, DECODES)
        statuses = []
        for body in bodies():
            want = plain.request("POST", WRITE, body, headers=HEADERS)
            got = pooled.request("POST", WRITE, body, headers=HEADERS)
            assert (got.status, got.body) == (want.status, want.body)
            statuses.append(want.status)
        assert statuses == [204, 204, 400, 204, 413, 400, 400, 204]
        assert metric_sum(pooled, DECODES) - before == 7  # every large body went through a worker
        assert metric_sum(plain, DECODES) == 0
        workers = children(pooled)
        assert len(workers) >= 2
    finally:
        plain.stop()
        pooled.stop()
    wait_gone(workers)  # a graceful stop ends the workers too
    got = records(pooled)
    assert len(got) == warmups + 4
    assert got == records(plain)


@pytest.mark.slow
def test_every_acknowledged_write_survives_kill_9_with_workers(tmp_path: Path) -> None:
    node = start(tmp_path, 2)
    workers_running(node)
    workers = children(node)
    acked: list[bytes] = []
    stop = threading.Event()
    lock = threading.Lock()

    def sender(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            body = write_body(SERIES, ts_ms=1_700_000_000_000 + k * 1_000_000 + i)  # unique per request
            try:
                resp = node.request("POST", WRITE, body, headers=HEADERS, timeout=30)
            except (OSError, http.client.HTTPException):
                return  # the node is gone
            if resp.status == 204:
                with lock:
                    acked.append(body)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 30, 120, what="30 acknowledged writes")
        before_kill = metric_sum(node, DECODES)
        node.kill()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert before_kill >= 30
    wait_gone(workers)  # workers notice their parent is gone; never leave one behind
    stored = {payload for _, payload in records(node)}
    missing = [b for b in acked if b not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes are not in the WAL"


@pytest.mark.slow
def test_a_dead_worker_means_503_then_new_workers(tmp_path: Path) -> None:
    """A worker killed mid-load (as the OOM killer would): requests it held answer 503 + Retry-After, never
    a 2xx for a body that was not stored, and new workers take over."""
    node = start(tmp_path, 2)
    try:
        workers_running(node)
        decoders = [pid for pid in children(node) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(decoders) == 2
        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def sender() -> None:
            while not stop.is_set():
                resp = node.request("POST", WRITE, write_body(SERIES), headers=HEADERS, timeout=30)
                answers.append((resp.status, resp.headers.get("retry-after")))

        threads = [threading.Thread(target=sender) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(answers) >= 5, 60, what="writes flowing")
            for pid in decoders:
                os.kill(pid, signal.SIGKILL)
            before = metric_sum(node, DECODES)
            wait_for(lambda: metric_sum(node, DECODES) > before + 5, 60, what="new workers decoding")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert set(answers) <= {(204, None), (503, "1")}, set(answers)
        assert answers[-1] == (204, None)
        assert all(not Path(f"/proc/{pid}").exists() or "spawn_main" not in Path(f"/proc/{pid}/cmdline").read_text()
                   for pid in decoders)
        workers = children(node)
    finally:
        node.stop()
    wait_gone(workers)
    stored = len(records(node))
    assert stored >= sum(1 for a in answers if a[0] == 204)


@pytest.mark.slow
def test_refusals_cross_the_process_boundary_unchanged() -> None:
    err = pickle.loads(pickle.dumps(TooLarge(5, 4)))
    assert (type(err), err.declared, err.limit, str(err)) == (TooLarge, 5, 4, str(TooLarge(5, 4)))
    assert 1 <= cpu_limit() <= (os.cpu_count() or 1)
    assert default_workers() in (0, *range(2, 65))

    async def run() -> None:
        pool = DecodePool(1, min_bytes=0)
        pool.start()
        try:
            good = write_body(SERIES)
            bad = write_body([[("__name__", "m"), ("bad-name", "x")]])
            assert await pool.decode(good, 1 << 24) == SeriesChecker().decode(good, 1 << 24)
            with pytest.raises(CodecError) as got:
                await pool.decode(bad, 1 << 24)
            with pytest.raises(CodecError) as want:
                SeriesChecker().decode(bad, 1 << 24)
            assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))
            with pytest.raises(TooLarge):
                await pool.decode(good, 100)
        finally:
            await pool.stop()

    asyncio.run(run())


def test_default_worker_count_leaves_the_serving_process_a_cpu() -> None:
    """Below three CPUs bodies decode in the serving process (workers measured slower there); above, one
    worker per CPU beyond the serving process's own."""
    assert [default_workers(n) for n in (1, 2, 3, 4, 16)] == [0, 0, 2, 3, 15]
    assert default_workers() == default_workers(cpu_limit())


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("3", True), ("-1", False), ("65", False)])
def test_ingest_workers_setting(value: str, ok: bool) -> None:
    text = f"metrics:\n  wal_directory: w\n  ingest_workers: {value}\n"
    if ok:
        assert parse_node_config(text).metrics.ingest_workers == int(value)
    else:
        with pytest.raises(ConfigError, match="ingest_workers"):
            parse_node_config(text)
    assert parse_node_config("metrics:\n  wal_directory: w\n").metrics.ingest_workers is None
