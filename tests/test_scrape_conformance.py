"""Conformance against Prometheus itself.

Prometheus 2.42 in agent mode and our node scrape the same targets with the same scrape_configs and both
remote_write to one real Prometheus receiver, under `replica="prom"` and `replica="ours"`. The series sets
(label sets without `replica`) and the `up` values seen at the receiver must be the same; so must the
effect of a target going down and coming back (up 0/1, its series stale) and of a file_sd target removed
(all its series and report series stale).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.conformance_target import ConformanceTarget
from tests.helpers.node_process import NodeProcess, wait_for
from tests.helpers.peers import require
from tests.helpers.ports import free_port
from tests.helpers.prometheus_server import PrometheusServer

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"

pytestmark = pytest.mark.slow

LabelSet = frozenset[tuple[str, str]]


def scrape_configs(target: str, node_exporter: str, receiver: str, sd_file: Path) -> list[dict[str, Any]]:
    """The scrape_configs both scrapers run (JSON is YAML, so one structure serves both config files)."""
    at = [target]
    return [
        {"job_name": "node", "static_configs": [{"targets": [node_exporter]}],
         "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": "go_gc_duration_seconds.*",
                                     "action": "drop"}]},
        {"job_name": "prometheus", "static_configs": [{"targets": [receiver]}]},
        {"job_name": "conf",
         "static_configs": [{"targets": at, "labels": {"team": "a"}},
                            {"targets": at, "labels": {"__metrics_path__": "/om", "team": "b"}},
                            {"targets": at, "labels": {"__metrics_path__": "/ts"}},
                            {"targets": at, "labels": {"__metrics_path__": "/small", "team": "c"}}],
         "relabel_configs": [
             {"source_labels": ["__address__"], "regex": r"127\.0\.0\.1:(\d+)", "target_label": "port",
              "replacement": "p$1"},
             {"target_label": "env", "replacement": "conf"},
             {"source_labels": ["__metrics_path__"], "target_label": "path"},
             {"source_labels": ["team"], "regex": "c", "action": "drop"}],
         "metric_relabel_configs": [
             {"source_labels": ["__name__"], "regex": "conf_drop_me", "action": "drop"},
             {"source_labels": ["code"], "regex": "5..", "target_label": "error_class", "replacement": "server"},
             {"regex": "esc", "action": "labeldrop"},
             {"source_labels": ["__name__", "method"], "regex": "conf_requests_total;(.*)",
              "target_label": "verb", "replacement": "verb_$1"},
             {"source_labels": ["room"], "modulus": 4, "target_label": "shard", "action": "hashmod"},
             {"regex": "exported_(.*)", "replacement": "was_$1", "action": "labelmap"}]},
        {"job_name": "honor", "honor_labels": True, "static_configs": [{"targets": at}]},
        {"job_name": "params", "metrics_path": "/echo", "params": {"module": ["m1"], "extra": ["a", "b"]},
         "static_configs": [{"targets": at}, {"targets": at, "labels": {"mod": "m2"}}],
         "relabel_configs": [{"source_labels": ["mod"], "regex": "(.+)", "target_label": "__param_module"}]},
        {"job_name": "auth", "metrics_path": "/auth", "static_configs": [{"targets": at}],
         "basic_auth": {"username": "conf-user", "password": "conf-pass"}},
        {"job_name": "authbad", "metrics_path": "/auth", "static_configs": [{"targets": at}],
         "basic_auth": {"username": "conf-user", "password": "wrong"}},
        {"job_name": "invalid",
         "static_configs": [{"targets": at, "labels": {"__metrics_path__": "/invalid"}},
                            {"targets": at, "labels": {"__metrics_path__": "/dupnames"}}],
         "relabel_configs": [{"source_labels": ["__metrics_path__"], "target_label": "path"}]},
        {"job_name": "noname", "metrics_path": "/small", "static_configs": [{"targets": at}],
         "metric_relabel_configs": [{"regex": "__name__", "action": "labeldrop"}]},
        # no port: http gets :80, https :443 (nothing listens there: both scrapes fail the same way)
        {"job_name": "defport", "static_configs": [{"targets": ["localhost"]}]},
        {"job_name": "defport_tls", "scheme": "https", "static_configs": [{"targets": ["localhost"]}]},
        {"job_name": "flap", "metrics_path": "/flap", "static_configs": [{"targets": at}]},
        {"job_name": "files", "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}],
         "relabel_configs": [{"source_labels": ["__metrics_path__"], "target_label": "path"}]},
    ]


def remote_write(url: str) -> list[dict[str, Any]]:
    return [{"url": url, "queue_config": {"batch_send_deadline": "200ms", "max_samples_per_send": 10000,
                                          "min_backoff": "50ms", "max_backoff": "500ms"}}]


def write_sd(path: Path, target: str, paths: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [target], "labels": {"__metrics_path__": p}} for p in paths]))
    tmp.replace(path)


def series_sets(receiver: PrometheusServer, start: float) -> dict[str, set[LabelSet]]:
    out = {}
    for replica in ("prom", "ours"):
        rows = receiver.series(f'{{replica="{replica}"}}', start=start, end=time.time() + 5)
        out[replica] = {frozenset((k, v) for k, v in row.items() if k != "replica") for row in rows}
    return out


def instant(receiver: PrometheusServer, expr: str) -> dict[str, dict[LabelSet, str]]:
    """`expr` evaluated now, per replica: label set (without replica) -> value."""
    out: dict[str, dict[LabelSet, str]] = {"prom": {}, "ours": {}}
    for row in receiver.query(expr, time_s=time.time()):
        metric = dict(row["metric"])
        replica = metric.pop("replica", "")
        if replica in out:
            out[replica][frozenset(metric.items())] = row["value"][1]
    return out


def instant_sets(receiver: PrometheusServer, expr: str) -> dict[str, set[LabelSet]]:
    return {replica: set(values) for replica, values in instant(receiver, expr).items()}


def describe(diff: set[LabelSet]) -> str:
    return "\n".join(sorted(str(dict(sorted(s))) for s in diff)[:40])


def wait_same(what: str, get: Callable[[], dict[str, Any]], ok: Callable[[dict[str, Any]], bool] = lambda d: True,
              timeout: float = 15.0) -> dict[str, Any]:
    """Poll until both replicas show the same (and `ok`) result; on timeout, fail showing the difference."""
    last: dict[str, Any] = {}

    def check() -> bool:
        last.clear()
        last.update(get())
        return last["prom"] == last["ours"] and ok(last)

    try:
        wait_for(check, timeout=timeout, interval=0.25, what=what)
    except AssertionError:
        prom, ours = last.get("prom", set()), last.get("ours", set())
        if isinstance(prom, dict):
            only_prom = {k: v for k, v in prom.items() if ours.get(k) != v}
            only_ours = {k: v for k, v in ours.items() if prom.get(k) != v}
            detail = f"prom only/different: {only_prom}\nours only/different: {only_ours}"
        else:
            detail = f"prom only:\n{describe(prom - ours)}\nours only:\n{describe(ours - prom)}"
        raise AssertionError(f"{what}: replicas differ\n{detail}") from None
    return last


class NodeExporter:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop
        # The default collectors minus systemd (no systemd here). Their series sets do not change from
        # scrape to scrape on an idle machine.
        self.proc = subprocess.Popen([require(NODE_EXPORTER, "prometheus-node-exporter"),
                                      f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--no-collector.systemd",
                                      # other tests mount and unmount tmpfs under /tmp while both replicas
                                      # scrape, which would make their series sets differ by timing alone
                                      "--collector.filesystem.mount-points-exclude="
                                      "^/(dev|proc|run|sys|mnt|media|tmp|var/lib/docker/.+)($|/)"],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def test_series_and_up_match_prometheus_agent(tmp_path: Path) -> None:
    start = time.time() - 5
    target = ConformanceTarget().start()
    exporter = NodeExporter(tmp_path / "node_exporter.log")
    receiver = PrometheusServer(tmp_path, receiver=True).start()
    agent = node = None
    try:
        addr = f"127.0.0.1:{target.port}"
        sd_file = tmp_path / "targets.json"
        write_sd(sd_file, addr, ["/gone", "/stay"])
        configs = scrape_configs(addr, f"127.0.0.1:{exporter.port}", f"127.0.0.1:{receiver.port}", sd_file)
        agent = PrometheusServer(tmp_path, receiver=False, agent=True, config=json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "external_labels": {"replica": "prom"}},
            "scrape_configs": configs, "remote_write": remote_write(receiver.write_url)}, indent=1))
        agent.start()
        node = NodeProcess(tmp_path / "node", json.dumps({
            "server": {"log_level": "info"},
            "metrics": {"wal_directory": "wal",
                        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                                   "external_labels": {"replica": "ours"}},
                        "configs": [{"name": "conform", "scrape_configs": configs,
                                     "remote_write": remote_write(receiver.write_url)}]}}, indent=1)).start()

        # 1. steady state: the same series and the same `up` values
        ups = wait_same("up values", lambda: instant(receiver, "up"), lambda d: len(d["prom"]) >= 16)
        expected_down = {"authbad", "invalid", "noname", "defport", "defport_tls"}
        for labels, value in ups["prom"].items():
            assert value == ("0" if dict(labels)["job"] in expected_down else "1"), (labels, value)
        wait_same("series sets", lambda: series_sets(receiver, start))
        # The report series' values, for the targets whose pages do not change (node-exporter's and
        # Prometheus' own pages do, so their sample counts legitimately differ from scrape to scrape).
        # scrape_series_added is nonzero only on a first scrape: compare its maximum over the run.
        fixed = 'job!~"node|prometheus"'
        for expr in (f"scrape_samples_scraped{{{fixed}}}", f"scrape_samples_post_metric_relabeling{{{fixed}}}",
                     f"max_over_time(scrape_series_added{{{fixed}}}[5m])"):
            wait_same(expr, lambda expr=expr: instant(receiver, expr))

        # 2. a target going down: up 0 and its series stale; coming back: up 1 and the series again
        target.down = True
        wait_same("flap down", lambda: instant(receiver, 'up{job="flap"} or flap_value'),
                  lambda d: list(d["prom"].values()) == ["0"])
        target.down = False
        wait_same("flap back", lambda: instant(receiver, 'up{job="flap"} or flap_value'),
                  lambda d: sorted(d["prom"].values()) == ["1", "1"])

        # 3. a target removed from file_sd: every series of it (report series included) goes stale
        write_sd(sd_file, addr, ["/stay"])
        wait_same("removed target stale", lambda: instant_sets(receiver, '{job="files"}'),
                  lambda d: {dict(k).get("path") for k in d["prom"]} == {"/stay"})
        # Prometheus stamps those stale markers with the next scrape slot after the target went away
        # (endOfRunStaleness): the series is still there just before that slot, gone just after it.
        for replica in ("prom", "ours"):
            sel = f'gone_value{{replica="{replica}"}}'
            last_ts = receiver.query(f"{sel}[5m]", time_s=time.time())[0]["values"][-1][0]
            assert receiver.query(sel, time_s=last_ts + 0.75), f"{replica}: stale before the next slot"
            assert not receiver.query(sel, time_s=last_ts + 1.5), f"{replica}: not stale after the next slot"
        wait_same("series sets at the end", lambda: series_sets(receiver, start))
    finally:
        for proc in (node, agent):
            if proc is not None:
                proc.stop()
        receiver.stop()
        exporter.stop()
        target.stop()
