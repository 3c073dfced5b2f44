"""`/write` refuses what Prometheus 2.42's receiver refuses: the same malformed bodies go to a real
Prometheus (`--web.enable-remote-write-receiver`) and to a node, and both must refuse them."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import snappy

from service.metrics.ingest import CodecError, SeriesChecker
from tests.helpers.node_process import NodeProcess
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.receiver_node import RW_HEADERS, WRITE, static_config
from tests.helpers.rw_malformed import Case, accepted, cases

TS_MS = int(time.time() * 1000)
CASES = cases(TS_MS)
ACCEPTED = accepted(TS_MS)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path_factory.mktemp("prom"), receiver=True) as prom:
        yield prom


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp("strict")
    proc = NodeProcess(base, static_config(base / "wal", ["demo"])).start()
    yield proc
    proc.stop()


def post_prometheus(prom: PrometheusServer, raw: bytes) -> tuple[int, str]:
    req = urllib.request.Request(prom.write_url, data=snappy.compress(raw), method="POST", headers=RW_HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def appended(node: NodeProcess) -> float:
    found = re.search(r'^agent_wal_samples_appended_total\{instance_name="demo"\} (\S+)$',
                      node.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_checker_refuses_with_prometheus_wording(case: Case) -> None:
    """In-process: every case is refused; where Prometheus answers 400 our reason is its reason."""
    with pytest.raises(CodecError) as err:
        SeriesChecker().decode(snappy.compress(case.raw), 1 << 20)
    if case.prometheus.startswith("400 "):
        assert str(err.value).startswith(case.prometheus[4:])


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_refuses_what_prometheus_refuses(case: Case, node: NodeProcess, prometheus: PrometheusServer) -> None:
    status, text = post_prometheus(prometheus, case.raw)
    assert f"{status} {text}".strip().startswith(case.prometheus), (status, text)
    if case.prometheus_accepts:
        assert status == 204  # we are stricter here on purpose (see tests/helpers/rw_malformed.py)
    else:
        assert status >= 400
    before = appended(node)
    resp = node.request("POST", WRITE.format("demo"), snappy.compress(case.raw), headers=RW_HEADERS)
    assert resp.status == 400, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    if status == 400:
        assert resp.text.strip() == text.strip()  # Prometheus' own wording
    assert appended(node) == before  # refused means nothing was kept


@pytest.mark.slow
@pytest.mark.parametrize(("name", "raw"), ACCEPTED, ids=[n for n, _ in ACCEPTED])
def test_both_accept_unknown_fields(name: str, raw: bytes, node: NodeProcess, prometheus: PrometheusServer) -> None:
    assert post_prometheus(prometheus, raw)[0] == 204
    before = appended(node)
    resp = node.request("POST", WRITE.format("demo"), snappy.compress(raw), headers=RW_HEADERS)
    assert resp.status == 204, resp.text
    assert appended(node) == before + 1


def test_fast_path_accepts_canonical_bodies_without_walking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A canonically encoded body never reaches the Python walker (the receiver's fast path)."""
    from bench.codec import build_series
    from service.metrics.remote import validate
    from tests.helpers.rw_payloads import write_body

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked a canonical body")
    monkeypatch.setattr(validate, "walk", no_walk)
    stats = SeriesChecker().decode(write_body(build_series(500)), 1 << 24)
    assert stats.series == 500 and stats.new_series == 500
