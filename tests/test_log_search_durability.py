"""The search store keeps every acknowledged line: a real node pushed at full speed, killed -9 under load, its
writer process killed, and fed timestamps the writer once died on."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from service.logs.search.schema import DB_FILE
from tests.helpers.logs_node import logs_node_yaml, proto_body
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.tmpfs import fill, mounted_tmpfs

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}

# A small read-ahead: the store falls far behind it (a bounded queue that dropped would lose lines).
CONFIG = logs_node_yaml(search="{retention: 30d, max_queue_entries: 5000}")


class Pusher:
    """Threads pushing distinct lines ("<tag> <batch> <i>") as fast as the node takes them. A batch is
    counted only when answered 204; a batch whose answer never came (the node was killed) is "maybe"."""

    def __init__(self, port: int, tag: str, *, threads: int = 3, lines: int = 500, batches: int = 10**9) -> None:
        self.port, self.tag, self.lines, self.batches = port, tag, lines, batches
        self.acked: set[int] = set()
        self.maybe: set[int] = set()
        self.refused = 0  # 429/503: not acknowledged, retried
        self._next = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Pusher:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        """Wait for every batch to be pushed (or the pusher stopped)."""
        for t in self._threads:
            t.join(120)

    @property
    def acked_lines(self) -> int:
        return len(self.acked) * self.lines

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.batches:
                return None
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        batch = self._take()
        while batch is not None and not self._stop.is_set():
            body = proto_body([(f'{{container="{self.tag}", stream="stdout"}}',
                                [f"{self.tag} {batch} {i}" for i in range(self.lines)])], ts=int(time.time()))
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/loki/api/v1/push", body=body, headers=PROTO)
                resp = conn.getresponse()
                resp.read()
            except OSError:
                with self._lock:
                    self.maybe.add(batch)
                conn = None
                if self._stop.wait(0.05):
                    break
                batch = self._take()
                continue
            with self._lock:
                if resp.status == 204:
                    self.acked.add(batch)
                    batch = self._take()
                else:
                    assert resp.status in (429, 503), resp.status
                    self.refused += 1
        if conn is not None:
            conn.close()


def total(node: NodeProcess, tag: str) -> int:
    resp = node.get(f"/api/logs/search?container={tag}&limit=1")
    assert resp.status == 200, resp.text
    return resp.json()["data"]["total"]


def store_lines(workdir: Path, tag: str) -> list[str]:
    """Every line of `tag` in the node's store, read from its database (the node is stopped)."""
    (db,) = (workdir / "data-agent" / "search").glob(f"*/{DB_FILE}")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT line FROM logs WHERE line LIKE ?", (f"{tag} %",))]
    finally:
        conn.close()


def search_status(node: NodeProcess) -> dict:
    return node.get("/api/status").json()["data"]


@pytest.mark.slow
def test_every_acknowledged_line_becomes_searchable_at_full_speed(tmp_path: Path) -> None:
    """Pushing faster than the store indexes makes it lag (reported), never drop: the count is exact."""
    node = NodeProcess(tmp_path / "node", CONFIG).start()
    try:
        pusher = Pusher(node.port, "full", batches=160).start()  # 80,000 lines
        lag_seen = 0
        deadline = time.monotonic() + 120
        while any(t.is_alive() for t in pusher._threads) and time.monotonic() < deadline:
            lag_seen = max(lag_seen, search_status(node)["store"]["indexer"]["lagBytes"])
            time.sleep(0.1)
        pusher.stop()
        assert pusher.acked_lines == 80_000 and not pusher.maybe
        wait_for(lambda: total(node, "full") == 80_000, 120, what="every acknowledged line searchable")
        # the position the lag is measured from arrives from the writer just after its rows are visible
        wait_for(lambda: search_status(node)["store"]["indexer"]["lagBytes"] == 0, 30, what="lag back to 0")
        status = search_status(node)
        indexer = status["store"]["indexer"]
        assert status["status"] == "healthy" and indexer["writerAlive"] and indexer["lagBytes"] == 0
        assert lag_seen > 0  # it did fall behind while the pushes came in
        print(f"full speed: 80,000 lines acknowledged, largest lag {lag_seen:,} WAL bytes, all searchable")
        metrics = node.get("/metrics").text
        assert 'logs_search_lag_bytes{instance_name="default"} 0.0' in metrics
        assert 'logs_search_lag_seconds{instance_name="default"}' in metrics
    finally:
        node.stop()


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_line_and_indexes_none_twice(tmp_path: Path) -> None:
    workdir = tmp_path / "node"
    node = NodeProcess(workdir, CONFIG).start()
    try:
        pusher = Pusher(node.port, "k9").start()
        wait_for(lambda: len(pusher.acked) >= 40, 60, what="some pushes acknowledged")
        wait_for(lambda: search_status(node)["store"]["indexer"]["lagBytes"] > 0 or len(pusher.acked) > 120, 60,
                 what="the store behind, or enough pushes")
        node.kill()
        pusher.stop()
        acked = set(pusher.acked)
        assert acked
        node.start()
        possible = pusher.maybe | acked
        wait_for(lambda: total(node, "k9") >= len(acked) * 500, 120, what="acknowledged lines searchable")
        wait_for(lambda: search_status(node)["store"]["indexer"]["lagBytes"] == 0, 60, what="store caught up")
    finally:
        node.stop()
    lines = store_lines(workdir, "k9")
    assert len(lines) == len(set(lines)), "a line was indexed twice"
    batches = {int(line.split()[1]) for line in lines}
    assert acked <= batches <= possible
    per_batch: dict[int, int] = {}
    for line in lines:
        b = int(line.split()[1])
        per_batch[b] = per_batch.get(b, 0) + 1
    assert all(n == 500 for n in per_batch.values())  # a push is all or nothing
    print(f"kill -9: {len(acked) * 500:,} lines acknowledged, {len(pusher.maybe)} pushes unanswered, "
          f"{len(lines):,} in the store, none twice")


def writer_pids(node: NodeProcess) -> list[int]:
    """The node's search writer processes (multiprocessing spawn children, not its resource tracker)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == node.pid and b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
            out.append(int(entry))
    return out


@pytest.mark.slow
def test_bad_timestamps_are_refused_and_a_dead_writer_is_reported_and_restarted(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", CONFIG).start()
    try:
        huge = {"streams": [{"stream": {"container": "bad"}, "values": [["99999999999999999999999999999", "x"]]}]}
        resp = node.request("POST", "/loki/api/v1/push", json.dumps(huge), JSON)
        assert resp.status == 400 and "value out of range" in resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        resp = node.request("POST", "/loki/api/v1/push", proto_body([('{container="bad"}', ["x"])], ts=2**62),
                            PROTO)
        assert resp.status == 400 and "after 10000-01-01" in resp.text
        nul = {"streams": [{"stream": {"a\u0000b": "x"}, "values": [[str(time.time_ns()), "x"]]}]}
        resp = node.request("POST", "/loki/api/v1/push", json.dumps(nul), JSON)
        assert resp.status == 400 and "NUL" in resp.text

        resp = node.request("POST", "/loki/api/v1/push",
                            proto_body([('{container="before"}', ["one", "two"])], ts=int(time.time())), PROTO)
        assert resp.status == 204
        wait_for(lambda: total(node, "before") == 2, 30, what="lines searchable")
        (pid,) = wait_for(lambda: writer_pids(node), 10, what="the writer process")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: search_status(node)["status"] == "degraded", 10, what="status to report the dead writer")
        resp = node.request("POST", "/loki/api/v1/push",
                            proto_body([('{container="after"}', ["three"] * 7)], ts=int(time.time())), PROTO)
        assert resp.status == 204  # accepted while the writer is down: it is in the WAL
        wait_for(lambda: total(node, "after") == 7, 60, what="lines pushed while the writer was down")
        status = search_status(node)
        assert status["status"] == "healthy" and status["store"]["indexer"]["writerRestarts"] >= 1
        assert total(node, "before") == 2  # nothing indexed twice after the restart
        assert 'logs_search_writer_restarts_total{instance_name="default"} 1.0' in node.get("/metrics").text
    finally:
        node.stop()


@pytest.mark.slow
def test_search_store_on_a_full_disk_catches_up_once_space_is_back(tmp_path: Path) -> None:
    """The store's database on a small tmpfs (needs root and mount): while it cannot grow its writer fails and
    is restarted with backoff, pushes are still acknowledged (the WAL is elsewhere), and once space is back
    every line becomes searchable without a node restart."""
    with mounted_tmpfs(tmp_path / "store", "4m") as store_dir:
        config = CONFIG.replace("search: {retention: 30d, max_queue_entries: 5000}",
                                f"search: {{retention: 30d, data_directory: {store_dir}}}")
        node = NodeProcess(tmp_path / "node", config).start()
        filler = store_dir / "filler"
        try:
            Pusher(node.port, "early", threads=1, batches=2).start().join()
            wait_for(lambda: total(node, "early") == 1_000, 30, what="first lines searchable")
            fill(filler)
            pusher = Pusher(node.port, "full", threads=2, batches=40).start()
            pusher.join()
            assert pusher.acked_lines == 20_000
            wait_for(lambda: search_status(node)["status"] == "degraded", 30, what="the failing writer reported")
            assert total(node, "full") < 20_000
            filler.unlink()
            wait_for(lambda: total(node, "full") == 20_000, 90, what="every line searchable once space is back")
            indexer = search_status(node)["store"]["indexer"]
            assert indexer["writerRestarts"] >= 1 and indexer["writerAlive"]
            assert total(node, "early") == 1_000
        finally:
            node.stop()
