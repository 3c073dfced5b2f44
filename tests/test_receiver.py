"""The remote write receiver `/write` (docs/http-api.md) against real node subprocesses: answers, WAL contents,
durability, faults, real Prometheus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import snappy

from service.proto import push_pb2
from service.proto.remote_pb2 import WriteRequest
from service.wal import wal_dir_for
from service.walstats import instance_wal_stats
from tests.helpers.node_process import REPO, NodeProcess, free_port, wait_for
from tests.helpers.processes import terminate
from tests.helpers.prometheus_server import require_prometheus
from tests.helpers.receiver_node import RW_HEADERS, WRITE, static_config
from tests.helpers.rw_payloads import simple_series, write_body
from tests.helpers.tmpfs import mounted_tmpfs


def start_node(base: Path, names: list[str], wal_dir: Path | None = None) -> NodeProcess:
    wal = wal_dir or base / "wal"
    return NodeProcess(base, static_config(wal, names)).start()


def wal_of(node: NodeProcess, name: str) -> str:
    return wal_dir_for(str(node.workdir / "wal"), name)


def post(node: NodeProcess, name: str, body: bytes, headers: dict[str, str] | None = None):
    return node.request("POST", WRITE.format(name), body, headers=RW_HEADERS if headers is None else headers)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory.mktemp("recv"), ["demo", "a/b"])
    yield proc
    proc.stop()


# ---------------------------------------------------------------------------------------------- answers


def test_valid_write_204_and_recorded_in_wal(tmp_path: Path) -> None:
    node = start_node(tmp_path, ["demo", "a/b"])
    try:
        body = write_body(simple_series(25))
        resp = post(node, "demo", body)
        assert (resp.status, resp.body) == (204, b"")
        assert post(node, "a%2Fb", write_body(simple_series(3))).status == 204
        metrics = node.get("/metrics").text
        assert 'agent_wal_samples_appended_total{instance_name="demo"} 25.0' in metrics
        assert 'agent_remote_write_receiver_requests_total{code="204"} 2.0' in metrics
    finally:
        node.stop()
    stats = instance_wal_stats(wal_of(node, "demo"))
    assert (stats.wal.records, stats.samples, len(stats.series)) == (1, 25, 25)
    assert stats.wal.corruptions == []
    assert instance_wal_stats(wal_of(node, "a/b")).samples == 3
    cli = subprocess.run([sys.executable, "-m", "service", "wal-stats", str(node.workdir / "wal")],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.count("WAL: ") == 2
    assert "  samples: 25\n  series: 25\n" in cli.stdout and "  samples: 3\n" in cli.stdout


def test_unknown_instance_400(node: NodeProcess) -> None:
    resp = post(node, "nope", write_body(simple_series(1)))
    assert resp.status == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text.strip() == "instance nope does not exist"
    assert post(node, "a%2Fc", write_body(simple_series(1))).text.strip() == "instance a/c does not exist"


@pytest.mark.parametrize(("body", "status", "text"), [
    (b"", 400, "empty body"),
    (b"this is not snappy at all", 400, "snappy: corrupt input"),
    (snappy.compress(os.urandom(300)), 400, ("proto", "unexpected EOF")),
    (b"\x80\x80\x80\x80\x08" + b"\x00" * 64, 413, "decoded body would be 2147483648 bytes"),
])
def test_bad_bodies(node: NodeProcess, body: bytes, status: int, text: str | tuple[str, ...]) -> None:
    start = time.monotonic()
    resp = post(node, "demo", body)
    assert (resp.status, resp.headers["content-type"].split(";")[0]) == (status, "text/plain"), resp.text
    assert resp.text.startswith(text), resp.text
    assert time.monotonic() - start < 2


def test_other_message_is_rejected(node: NodeProcess) -> None:
    push = push_pb2.PushRequest()
    stream = push.streams.add(labels='{job="x"}')
    entry = stream.entries.add(line="hello")
    entry.timestamp.seconds = 1_700_000_000
    resp = post(node, "demo", snappy.compress(push.SerializeToString()))
    assert resp.status == 400 and ("proto" in resp.text or "unexpected EOF" in resp.text), resp.text


def test_invalid_label_sets_400(node: NodeProcess) -> None:
    bad_name = write_body([[("__name__", "m"), ("bad-name", "x")]])
    assert post(node, "demo", bad_name).status == 400
    dup = write_body([[("__name__", "m"), ("a", "1"), ("a", "2")]])
    resp = post(node, "demo", dup)
    assert resp.status == 400 and "not unique" in resp.text


def test_oversized_body_413(node: NodeProcess) -> None:
    big = os.urandom(33 << 20)
    resp = post(node, "demo", big)
    assert resp.status == 413, resp.text
    assert "too large" in resp.text


def test_what_real_senders_send_is_accepted(tmp_path: Path) -> None:
    node = start_node(tmp_path, ["demo"])
    try:
        # no Content-Encoding / version headers, labels not sorted
        unsorted = write_body([[("job", "j"), ("__name__", "m"), ("a", "1")]])
        assert post(node, "demo", unsorted, headers={}).status == 204
        # metadata only (what Prometheus sends every metadata send_interval)
        meta = WriteRequest()
        meta.metadata.add(type=1, metric_family_name="m_total", help="a counter")
        assert post(node, "demo", snappy.compress(meta.SerializeToString())).status == 204
        # exemplars
        ex = WriteRequest()
        ts = ex.timeseries.add()
        ts.labels.add(name="__name__", value="h")
        ts.samples.add(value=1, timestamp=1_700_000_000_000)
        exemplar = ts.exemplars.add(value=1, timestamp=1_700_000_000_000)
        exemplar.labels.add(name="trace_id", value="abc")
        assert post(node, "demo", snappy.compress(ex.SerializeToString())).status == 204
        assert 'agent_wal_exemplars_appended_total{instance_name="demo"} 1.0' in node.get("/metrics").text
    finally:
        node.stop()
    stats = instance_wal_stats(wal_of(node, "demo"))
    assert (stats.wal.records, stats.samples, stats.metadata, stats.exemplars) == (3, 2, 1, 1)


# ------------------------------------------------------------------------------------------- durability


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", ["demo"])
    log_path = tmp_path / "acked.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sender = subprocess.Popen([sys.executable, "-m", "tests.helpers.rw_sender",
                               f"http://127.0.0.1:{node.port}{WRITE.format('demo')}", str(log_path), "8"],
                              env=env, cwd=REPO)
    try:
        wait_for(lambda: log_path.exists() and log_path.read_text().count("\n") >= 300, 30,
                 what="300 acknowledged requests")
        node.kill()
        assert sender.wait(15) == 0
    finally:
        if sender.poll() is None:
            os.kill(sender.pid, signal.SIGKILL)
            sender.wait()
    acked = dict(tuple(map(int, line.split())) for line in log_path.read_text().splitlines())
    node.start()  # repairs whatever tail the kill left
    assert post(node, "demo", write_body(simple_series(1))).status == 204
    node.stop()
    per_request: dict[int, int] = {}
    from service.wal import read_records

    for rec in read_records(wal_of(node, "demo")):
        for ts in WriteRequest.FromString(snappy.uncompress(rec.payload)).timeseries:
            labels = {label.name: label.value for label in ts.labels}
            if labels.get("__name__") == "durable":
                k = int(labels["req"])
                per_request[k] = per_request.get(k, 0) + len(ts.samples)
    missing = {k: n for k, n in acked.items() if per_request.get(k) != n}
    assert not missing, f"{len(missing)} acknowledged requests lost or incomplete, e.g. {list(missing)[:5]}"
    assert len(acked) >= 300


def test_torn_wal_tail_node_still_starts(tmp_path: Path) -> None:
    node = start_node(tmp_path, ["demo"])
    for i in range(5):
        assert post(node, "demo", write_body(simple_series(10), ts_ms=1_700_000_000_000 + i)).status == 204
    node.stop()
    wal = wal_of(node, "demo")
    segment = sorted(n for n in os.listdir(wal) if n.isdigit())[-1]
    with open(os.path.join(wal, segment), "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.truncate(size - 7)  # tear the last record
        f.seek(0, os.SEEK_END)
        f.write(b"\x01garbage-after-tear")
    node.start()
    assert post(node, "demo", write_body(simple_series(10))).status == 204
    node.stop()
    stats = instance_wal_stats(wal)
    assert stats.wal.corruptions == []
    assert (stats.wal.records, stats.samples) == (5, 50)  # 4 intact + 1 new; the torn one was cut


# ---------------------------------------------------------------------------------------- disk failures


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", "256k") as mount_point:
        yield mount_point


def test_full_wal_disk_500_then_recovers_without_corruption(tmp_path: Path, tmpfs: Path) -> None:
    filler = tmpfs / "filler"
    filler.write_bytes(b"x" * (160 << 10))  # leave the WAL well under 100 KiB
    node = NodeProcess(tmp_path / "node", static_config(tmpfs / "wal", ["demo"])).start()
    try:
        acked = failed = 0
        for i in range(500):
            resp = post(node, "demo", write_body(simple_series(100, batch=str(i)), ts_ms=1_700_000_000_000 + i))
            assert resp.status in (204, 500), resp.text
            if resp.status == 204:
                acked += 1
                continue
            failed += 1
            assert "failed to append to the WAL" in resp.text
            if failed >= 3:
                break
        assert failed >= 3 and acked >= 1
        assert node.get("/-/healthy").status == 200
        filler.unlink()
        wait_for(lambda: post(node, "demo", write_body(simple_series(7, batch="after"))).status == 204, 10,
                 what="writes to work again once space is free")
    finally:
        node.stop()
    stats = instance_wal_stats(wal_dir_for(str(tmpfs / "wal"), "demo"))
    assert stats.wal.corruptions == []
    assert (stats.wal.records, stats.samples) == (acked + 1, acked * 100 + 7)


def test_read_only_wal_disk_instance_fails_node_serves(tmp_path: Path, tmpfs: Path) -> None:
    """A mounted file system cannot be made read-only while the WAL holds a segment open for writing (the
    kernel refuses the remount), so a read-only WAL disk shows up at start: that instance does not start,
    the node and its other instances serve."""
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    cfg = static_config(tmpfs / "wal", ["demo"])
    node = NodeProcess(tmp_path / "node", cfg).start()
    try:
        assert node.get("/-/healthy").status == 200
        resp = post(node, "demo", write_body(simple_series(5)))
        assert (resp.status, resp.text.strip()) == (400, "instance demo does not exist")
        assert 'agent_metrics_instance_abnormal_exits_total{instance_name="demo"} 1.0' in node.get("/metrics").text
    finally:
        node.stop()
    assert "Read-only file system" in node.log()


# ----------------------------------------------------------------------------------- a real Prometheus


def test_real_prometheus_remote_writes_into_us(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", ["prom"])
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s, external_labels: {{cluster: demo}}}}
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]
remote_write:
  - url: http://127.0.0.1:{node.port}{WRITE.format('prom')}
    send_exemplars: true
    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500}}
    metadata_config: {{send: true, send_interval: 1s}}
""")
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    prom = subprocess.Popen([require_prometheus(), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
    try:
        def appended() -> float:
            for line in node.get("/metrics").text.splitlines():
                if line.startswith('agent_wal_samples_appended_total{instance_name="prom"}'):
                    return float(line.split()[-1])
            return 0.0

        wait_for(lambda: appended() > 1000, 40, what="Prometheus samples to arrive")
        wait_for(lambda: 'code="204"' in node.get("/metrics").text, 5, what="204 answers")
    finally:
        terminate(prom, 30)
        log.close()
        node.stop()
    text = node.log()
    assert "level=error" not in text, text
    stats = instance_wal_stats(wal_dir_for(str(node.workdir / "wal"), "prom"))
    assert stats.samples > 1000 and stats.metadata > 0
    assert any(b"'up'" in key and b"'cluster', 'demo'" in key for key in stats.series)
