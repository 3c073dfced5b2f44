"""Per-target sharding (`sharding: targets`) on real node processes over a real etcd, counted at the targets.

One small HTTP server serves a few hundred paths (one target each) and logs every request. Every node
scrapes a sharded target at the same slots (its phase is fixed by the target's hash), so the requests of a
path fall into slots: two requests in one slot are a double scrape, a slot without one is a gap.
A real Prometheus receives every node's remote_write.
"""

from __future__ import annotations

import itertools
import signal
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import wait_for
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.rw_payloads import write_body
from tests.helpers.sharding_targets import ManyTargets

TARGETS = 200
INTERVAL = 2.0
TTL = 2.0
JOB = "sharded"


def sharded_config(targets: ManyTargets, write_url: str) -> str:
    return (f"sharding: targets\n"
            f"scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            f"    scrape_interval: {INTERVAL:g}s\n"
            f"    scrape_timeout: {INTERVAL:g}s\n"
            f"    static_configs:\n{targets.static_configs()}"
            f"remote_write:\n"
            f"  - url: {write_url}\n"
            f"    queue_config: {{batch_send_deadline: 500ms}}\n")


def phase(times: list[float], interval: float = INTERVAL) -> float:
    """A target's scrape phase: the circular median of its requests' times modulo the interval (robust to
    the odd scrape made late by a stall)."""
    rs = [t % interval for t in times]

    def spread(c: float) -> float:
        return sum(min(abs(r - c), interval - abs(r - c)) for r in rs)

    return min(rs, key=spread) if rs else 0.0


def doubles_and_gaps(requests: dict[str, list[tuple[float, str]]], history: dict[str, list[tuple[float, str]]]
                     ) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per path: the slots two nodes scraped, and the slots nobody scraped where the target changed hands
    (from one node's last slot to the next node's first; a slot skipped by a loop that fell behind on a
    loaded machine is not a handoff). A request's slot is its time rounded to the path's phase, taken over
    its whole history."""
    doubles: dict[str, list[int]] = {}
    gaps: dict[str, int] = {}
    for path, reqs in requests.items():
        p = phase([t for t, _ in history[path]])
        by_slot: dict[int, set[str]] = {}
        for t, who in reqs:
            by_slot.setdefault(round((t - p) / INTERVAL), set()).add(who)
        two = sorted(k for k, who in by_slot.items() if len(who) > 1)
        if two:
            doubles[path] = two
        ordered = sorted(by_slot)
        missed = max((b - a - 1 for a, b in itertools.pairwise(ordered) if by_slot[a] != by_slot[b]), default=0)
        if missed:
            gaps[path] = missed
    return doubles, gaps


def timeline(targets: ManyTargets, paths: dict[str, int], since: float) -> list[tuple[str, list]]:
    """A few paths' requests around `since` (seconds from it, scraper): what a failure message shows."""
    reqs = targets.requests(since - 2 * INTERVAL)
    return [(p, [(round(t - since, 2), w) for t, w in reqs[p]]) for p in sorted(paths)[:3]]


def split(cluster: NodeCluster) -> dict[str, str]:
    """path → the node whose targets API lists it; fails on a path listed by two nodes."""
    items = list(cluster.nodes.items())
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        answers = list(pool.map(lambda kv: kv[1].get("/agent/api/v1/metrics/targets", timeout=10).json()["data"],
                                items))
    owner: dict[str, str] = {}
    for (node_id, _), targets in zip(items, answers, strict=True):
        for t in targets:
            path = urllib.parse.urlsplit(t["endpoint"]).path
            assert path not in owner, f"{path} listed by {owner[path]} and {node_id}"
            owner[path] = node_id
    return owner


def settled(cluster: NodeCluster, paths: list[str]) -> dict[str, str] | None:
    """The split once every ACTIVE node scrapes a share and together they scrape every path once."""
    ring = next(iter(cluster.nodes.values())).get("/agent/api/v1/cluster/ring", timeout=10).json()["data"]
    if sorted(m["id"] for m in ring["members"] if m["state"] == "ACTIVE") != sorted(cluster.nodes):
        return None
    owner = split(cluster)
    if sorted(owner) != sorted(paths) or set(owner.values()) != set(cluster.nodes):
        return None
    return owner


def wait_settled(cluster: NodeCluster, paths: list[str], what: str) -> dict[str, str]:
    return wait_for(lambda: settled(cluster, paths), 45, interval=0.2, what=what)


def add_nodes(cluster: NodeCluster, targets: ManyTargets, count: int) -> None:
    """Start nodes, naming their processes to the target server so it can tell who scraped."""
    for node in cluster.add(count):
        assert node.proc is not None
        targets.scrapers[node.proc.pid] = node.node_id  # type: ignore[attr-defined]


def wait_seconds(seconds: float) -> None:
    """Let scrapes happen for `seconds` (the window the request log is then read over)."""
    end = time.time() + seconds
    wait_for(lambda: time.time() >= end, seconds + 5, interval=0.1, what=f"{seconds:g}s of scraping")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def cluster(tmp_path: Path, etcd: EtcdServer) -> Iterator[NodeCluster]:
    c = NodeCluster(tmp_path, etcd.endpoint, lease_ttl=f"{TTL:g}s")
    yield c
    c.close()


@pytest.fixture
def targets() -> Iterator[ManyTargets]:
    server = ManyTargets(TARGETS).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_targets_split_move_and_take_over(cluster: NodeCluster, targets: ManyTargets, tmp_path: Path) -> None:
    """Exactly once after convergence; a join moves about 1/N and a graceful leave hands over, both without a
    double scrape or a gap longer than one slot; after kill -9 the dead node's targets are scraped again
    within lease TTL + one interval (+ the reshard's own latency); every node accepts /write for the config;
    Prometheus sees one series per target and no two samples of a series in one slot."""
    prometheus = PrometheusServer(tmp_path / "prom").start()
    try:
        add_nodes(cluster, targets, 3)
        n0 = cluster.nodes["n0"]
        bad = n0.request("PUT", "/agent/api/v1/config/bad", "sharding: bogus\nscrape_configs: []\n")
        assert bad.status == 400 and "sharding" in bad.json()["data"]["error"], bad.text
        body = sharded_config(targets, prometheus.write_url)
        assert n0.request("PUT", "/agent/api/v1/config/big", body).status in (200, 201)
        paths = targets.paths

        # exactly once, counted at the targets
        owner = wait_settled(cluster, paths, "three nodes splitting the targets")
        shares = Counter(owner.values())
        assert all(TARGETS / 6 <= n <= TARGETS / 2 for n in shares.values()), shares
        ring = n0.get("/agent/api/v1/cluster/ring").json()["data"]
        (row,) = [c for c in ring["configs"] if c["name"] == "big"]
        assert row["sharding"] == "targets" and row["targets"] == dict(shares), row
        # /write for it is accepted by every node, into that node's own WAL (not passed on)
        for node_id, node in cluster.nodes.items():
            body = write_body([[("__name__", "rw_probe"), ("node", node_id)]], ts_ms=int(time.time() * 1000))
            resp = node.request("POST", "/agent/api/v1/metrics/instance/big/write", body,
                                headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"})
            assert resp.status == 204, resp.text
            assert 'agent_wal_samples_appended_total{instance_name="big"} 1.0' in node.get("/metrics").text
        start = time.time() + INTERVAL  # the slots from the next one on
        wait_seconds(4 * INTERVAL)
        window = targets.requests(start, time.time() - INTERVAL)
        assert sorted(window) == sorted(paths)
        # each by its owner alone ("?": a connection the server could not tie to a process in time)
        wrong = {p: (owner[p], window[p]) for p in paths
                 if owner[p] not in {w for _, w in window[p]} or {w for _, w in window[p]} - {owner[p], "?"}}
        assert not wrong, list(wrong.items())[:3]
        doubles, _ = doubles_and_gaps(window, targets.requests())
        assert not doubles, doubles

        # a join moves about 1/N, to the joiner only, without a double scrape
        joined_at = time.time()
        add_nodes(cluster, targets, 1)
        after = wait_settled(cluster, paths, "the joiner taking its share")
        moved = {p for p in paths if after[p] != owner[p]}
        assert {after[p] for p in moved} == {"n3"}
        assert 0.5 * TARGETS / 4 <= len(moved) <= 1.5 * TARGETS / 4, len(moved)
        wait_seconds(3 * INTERVAL)
        doubles, gaps = doubles_and_gaps(targets.requests(joined_at, time.time() - INTERVAL), targets.requests())
        assert not doubles, doubles
        assert max(gaps.values(), default=0) <= 1, timeline(targets, gaps, joined_at)

        # a graceful leave hands over the same way
        left_at = time.time()
        stopped = cluster.remove("n1", signal.SIGTERM)
        owner = wait_settled(cluster, paths, "the others taking over after SIGTERM")
        wait_seconds(3 * INTERVAL)
        doubles, gaps = doubles_and_gaps(targets.requests(left_at, time.time() - INTERVAL), targets.requests())
        assert not doubles, doubles
        assert max(gaps.values(), default=0) <= 1, timeline(targets, gaps, left_at)
        assert '"left the ring"' in stopped.log()

        # kill -9: taken over within lease TTL + one interval (+ detection and reshard latency)
        dead = [p for p, n in owner.items() if n == "n2"]
        killed_at = time.time()
        cluster.remove("n2", signal.SIGKILL)

        def resumed() -> dict[str, float] | None:
            after_kill = targets.requests(killed_at)
            firsts = {p: min(t for t, _ in after_kill[p]) - killed_at for p in dead if after_kill.get(p)}
            return firsts if len(firsts) == len(dead) else None

        firsts = wait_for(resumed, TTL + INTERVAL + 20, interval=0.1, what="the dead node's targets scraped again")
        took = max(firsts.values())
        print(f"kill -9 takeover of {len(dead)} targets: {took:.2f}s (lease TTL {TTL:g}s, interval {INTERVAL:g}s)")
        assert took <= TTL + INTERVAL + 3.5, took  # + etcd's lease expiry check, the watch and a reshard
        wait_settled(cluster, paths, "two survivors splitting every target")

        # the receiver: one series per target; no sample twice, none two nodes took in one slot (those would
        # be milliseconds apart; one node's samples are an interval apart, less a late scrape's delay)
        def series() -> list[dict] | None:
            result = prometheus.query(f'up{{job="{JOB}"}}[2m]')
            return result if len(result) == TARGETS else None

        result = wait_for(series, 30, interval=0.5, what="one series per target in Prometheus")
        probes = {r["metric"]["node"] for r in prometheus.query("rw_probe[5m]")}
        assert probes == {"n0", "n1", "n2"}, probes
        assert len({r["metric"]["instance"] for r in result}) == TARGETS

        def too_close(values: list[list]) -> list[float]:
            times = sorted(float(v[0]) for v in values)
            return [round(b - a, 3) for a, b in itertools.pairwise(times) if b - a < INTERVAL / 4]

        dup = {r["metric"]["instance"]: d for r in result if (d := too_close(r["values"]))}
        assert not dup, dup
    finally:
        cluster.close()  # before Prometheus: stopping nodes drain their queues to it, not to a dead remote
        prometheus.stop()
