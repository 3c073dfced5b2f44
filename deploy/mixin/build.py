"""Builds the mixin's generated files from their sources in this folder.

- ``dashboards/*.json`` from the panels below, with grafana-foundation-sdk (Grafana's typed builders), so a
  dashboard is reviewed as Python and a typo in a panel option fails here rather than in Grafana;
- the Helm chart's copies of ``alerts.yaml`` and of the dashboards (Helm reads only files inside a chart).

Run ``python deploy/mixin/build.py`` after editing; ``tests/test_mixin.py`` rebuilds into a temporary folder
and fails when the checked-in files differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

HERE = Path(__file__).resolve().parent
CHART_FILES = HERE.parent / "helm" / "scraping-service" / "files"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job", instance=~"$instance"'
# `instance` is the node (the scrape target); per-config self metrics name their config in `instance_name`.
QUEUE, QUEUE_LEGEND = "instance_name, remote_name", "{{instance_name}}/{{remote_name}}"  # one remote_write queue
STORE, STORE_LEGEND = "instance, instance_name", "{{instance}} {{instance_name}}"  # one logs config's search store


@dataclass(frozen=True)
class Graph:
    """One time series panel: a title, its queries (expr, legend) and a unit."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Single:
    """One stat panel showing a single current value."""

    title: str
    expr: str
    unit: str = "short"
    width: int = 6


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def _panel(item: Graph | Single) -> timeseries.Panel | stat.Panel:
    if isinstance(item, Single):
        return (stat.Panel().title(item.title).datasource(DATASOURCE).unit(item.unit).span(item.width).height(4)
                .with_target(_query(item.expr, "", "A")))
    panel = (timeseries.Panel().title(item.title).datasource(DATASOURCE).unit(item.unit).span(item.width)
             .height(8).min(0))
    if item.description:
        panel = panel.description(item.description)
    for i, (expr, legend) in enumerate(item.queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Graph | Single]]]) -> Dashboard:
    board = (Dashboard(title).uid(uid).tags(["scraping-service"]).refresh("30s").time("now-1h", "now")
             .timezone("utc")
             .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
             .with_variable(QueryVariable("job").label("Job").datasource(DATASOURCE)
                            .query("label_values(agent_dskit_ring_members, job)")
                            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).multi(True))
             .with_variable(QueryVariable("instance").label("Node").datasource(DATASOURCE)
                            .query('label_values(agent_dskit_ring_members{job=~"$job"}, instance)')
                            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).multi(True)))
    ids = iter(range(1, 1000))
    for row_title, items in rows:
        board = board.with_row(Row(row_title).id(next(ids)))
        for item in items:
            board = board.with_panel(_panel(item).id(next(ids)))
    return board


def rate(metric: str, by: str, extra: str = "", window: str = "$__rate_interval") -> str:
    inner = f"{SEL}, {extra}" if extra else SEL
    return f"sum by ({by}) (rate({metric}{{{inner}}}[{window}]))"


CLUSTER = dashboard("scraping-service-cluster", "scraping-service / Cluster", [
    ("Members", [
        Single("ACTIVE members", f'max(agent_dskit_ring_members{{{SEL}, state="ACTIVE"}})'),
        Single("Configs owned", f"sum(agent_cluster_configs_owned{{{SEL}}})"),
        Single("Configs running", f"sum(agent_metrics_active_configs{{{SEL}}})"),
        Single("Handoffs pending", f"sum(agent_cluster_configs_pending_handoff{{{SEL}}})"),
        Graph("Ring members by state", ((f"max by (state) (agent_dskit_ring_members{{{SEL}}})", "{{state}}"),)),
        Graph("Configs owned and running per node",
              ((f"agent_cluster_configs_owned{{{SEL}}}", "{{instance}} owned"),
               (f"agent_metrics_active_configs{{{SEL}}}", "{{instance}} running"))),
    ]),
    ("Reshards and handoffs", [
        Graph("Reshards by trigger", ((rate("agent_cluster_reshards_total", "trigger"), "{{trigger}}"),), "ops"),
        Graph("Reshard duration p99",
              (("histogram_quantile(0.99, " + rate("agent_metrics_scraping_service_reshard_duration_bucket",
                                                   "instance, le") + ")", "{{instance}}"),), "s"),
        Graph("Failed reshards",
              ((rate("agent_metrics_scraping_service_reshard_duration_count", "instance", 'success="0"'),
                "{{instance}}"),), "ops"),
        Graph("Handoff wait p50 / p99",
              (("histogram_quantile(0.5, " + rate("agent_cluster_handoff_wait_seconds_bucket", "le") + ")", "p50"),
               ("histogram_quantile(0.99, " + rate("agent_cluster_handoff_wait_seconds_bucket", "le") + ")",
                "p99")), "s"),
        Graph("Config API answers", ((rate("agent_http_requests_total", "code", 'handler="config_api"'),
                                      "{{code}}"),), "reqps"),
        Graph("KV store reachable", ((f"agent_kv_store_up{{{SEL}}}", "{{instance}}"),)),
    ]),
])

REMOTE_WRITE = dashboard("scraping-service-remote-write", "scraping-service / Remote write", [
    ("Ingest", [
        Graph("Samples appended to the WAL", ((rate("agent_wal_samples_appended_total", "instance"),
                                               "{{instance}}"),), "cps"),
        Graph("remote_write receiver requests", ((rate("agent_remote_write_receiver_requests_total", "code"),
                                                  "{{code}}"),), "reqps"),
        Graph("WAL fsync p99", (("histogram_quantile(0.99, " + rate("agent_wal_fsync_duration_seconds_bucket",
                                                                    "instance, le") + ")", "{{instance}}"),), "s"),
        Graph("WAL size", ((f"sum by (instance) (agent_wal_storage_size_bytes{{{SEL}}})", "{{instance}}"),),
              "bytes"),
    ]),
    ("Sending", [
        Graph("Samples sent / failed / retried / dropped",
              ((rate("prometheus_remote_storage_samples_total", QUEUE), f"{QUEUE_LEGEND} sent"),
               (rate("prometheus_remote_storage_samples_failed_total", QUEUE), f"{QUEUE_LEGEND} failed"),
               (rate("prometheus_remote_storage_samples_retried_total", QUEUE), f"{QUEUE_LEGEND} retried"),
               (rate("prometheus_remote_storage_samples_dropped_total", QUEUE), f"{QUEUE_LEGEND} dropped")),
              "cps", width=24),
        Graph("Lag behind the WAL",
              ((f"max by (instance, {QUEUE}) (prometheus_remote_storage_highest_timestamp_in_seconds{{{SEL}}}"
                f" - prometheus_remote_storage_queue_highest_sent_timestamp_seconds{{{SEL}}})",
                "{{instance}} " + QUEUE_LEGEND),), "s"),
        Graph("Shards", ((f"sum by ({QUEUE}) (prometheus_remote_storage_shards{{{SEL}}})", QUEUE_LEGEND),
                         (f"sum by ({QUEUE}) (prometheus_remote_storage_shards_desired{{{SEL}}})",
                          f"{QUEUE_LEGEND} desired"),
                         (f"max by ({QUEUE}) (prometheus_remote_storage_shards_max{{{SEL}}})",
                          f"{QUEUE_LEGEND} max"))),
        Graph("Samples pending", ((f"sum by ({QUEUE}) (prometheus_remote_storage_samples_pending{{{SEL}}})",
                                   QUEUE_LEGEND),)),
        Graph("Send duration p99",
              (("histogram_quantile(0.99, " + rate("prometheus_remote_storage_sent_batch_duration_seconds_bucket",
                                                   f"{QUEUE}, le") + ")", QUEUE_LEGEND),), "s"),
        Graph("Bytes sent", ((rate("prometheus_remote_storage_bytes_total", QUEUE), QUEUE_LEGEND),), "Bps"),
    ]),
])

SCRAPING = dashboard("scraping-service-scraping", "scraping-service / Scraping", [
    ("Targets", [
        Single("Targets up", f'sum(agent_metrics_targets{{{SEL}, state="up"}})'),
        Single("Targets down", f'sum(agent_metrics_targets{{{SEL}, state="down"}})'),
        Single("Targets unknown", f'sum(agent_metrics_targets{{{SEL}, state="unknown"}})'),
        Single("Slowest last scrape", f"max(agent_metrics_targets_slowest_scrape_seconds{{{SEL}}})", "s"),
        Graph("Targets by state", ((f"sum by (state) (agent_metrics_targets{{{SEL}}})", "{{state}}"),)),
        Graph("Targets down per node", ((f'agent_metrics_targets{{{SEL}, state="down"}}', "{{instance}}"),)),
    ]),
    ("Scrapes", [
        Graph("Mean and slowest scrape duration",
              ((f"sum(agent_metrics_targets_last_scrape_seconds{{{SEL}}})"
                f" / sum(agent_metrics_targets{{{SEL}}})", "mean"),
               (f"max(agent_metrics_targets_slowest_scrape_seconds{{{SEL}}})", "slowest")), "s"),
        Graph("Samples appended per target per second",
              ((f"sum(rate(agent_wal_samples_appended_total{{{SEL}}}[$__rate_interval]))"
                f" / sum(agent_metrics_targets{{{SEL}}})", "samples / target / s"),), "short",
               "Includes samples received by /write; per node in the remote write dashboard."),
    ]),
])

LOGS = dashboard("scraping-service-logs", "scraping-service / Logs", [
    ("Push", [
        Graph("Entries received", ((rate("loki_source_api_entries_written", "instance"), "{{instance}}"),), "cps"),
        Graph("Push requests p99",
              (("histogram_quantile(0.99, " + rate("loki_source_api_request_duration_seconds_bucket",
                                                   "instance, le") + ")", "{{instance}}"),), "s"),
        Graph("Push answers", ((rate("agent_http_requests_total", "code", 'handler="loki_push"'), "{{code}}"),),
              "reqps"),
        Graph("Push bytes received", ((rate("loki_source_api_request_message_bytes_sum", "instance"),
                                       "{{instance}}"),), "Bps"),
    ]),
    ("Loki client", [
        Graph("Entries sent / dropped",
              ((rate("loki_write_sent_entries_total", "host"), "{{host}} sent"),
               (rate("loki_write_dropped_entries_total", "host"), "{{host}} dropped")), "cps"),
        Graph("Batch retries", ((rate("loki_write_batch_retries_total", "host"), "{{host}}"),), "ops"),
        Graph("Send duration p99",
              (("histogram_quantile(0.99, " + rate("loki_write_request_duration_seconds_bucket", "host, le") + ")",
                "{{host}}"),), "s"),
        Graph("Files tailed", ((f"sum by (instance) (promtail_files_active_total{{{SEL}}})", "{{instance}}"),)),
    ]),
    ("Search store", [
        Graph("Entries indexed", ((rate("logs_search_written_entries_total", STORE), STORE_LEGEND),), "cps"),
        Graph("Entries waiting", ((f"max by ({STORE}) (logs_search_queue_entries{{{SEL}}})", STORE_LEGEND),)),
        Graph("Store size", ((f"sum by ({STORE}) (logs_search_store_bytes{{{SEL}}})", STORE_LEGEND),), "bytes"),
        Graph("Entries deleted by retention", ((rate("logs_search_retention_deleted_entries_total", STORE),
                                                STORE_LEGEND),), "cps"),
    ]),
])

NODE = dashboard("scraping-service-node", "scraping-service / Node", [
    ("Process", [
        Graph("CPU", ((f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}"),), "percentunit"),
        Graph("Resident memory", ((f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}"),), "bytes"),
        Graph("Open files", ((f"process_open_fds{{{SEL}}}", "{{instance}}"),
                             (f"process_max_fds{{{SEL}}}", "{{instance}} max"))),
        Graph("Event loop lag p50 / p99",
              (("histogram_quantile(0.5, " + rate("agent_event_loop_lag_seconds_bucket", "instance, le") + ")",
                "{{instance}} p50"),
               ("histogram_quantile(0.99, " + rate("agent_event_loop_lag_seconds_bucket", "instance, le") + ")",
                "{{instance}} p99")), "s"),
    ]),
    ("Disk and HTTP", [
        Graph("WAL filesystem free", ((f"agent_wal_filesystem_avail_bytes{{{SEL}}}", "{{instance}} free"),
                                      (f"agent_wal_filesystem_size_bytes{{{SEL}}}", "{{instance}} size")), "bytes"),
        Graph("HTTP answers by endpoint", ((rate("agent_http_requests_total", "handler, code"),
                                            "{{handler}} {{code}}"),), "reqps"),
    ]),
])

DASHBOARDS = {"cluster": CLUSTER, "remote-write": REMOTE_WRITE, "scraping": SCRAPING, "logs": LOGS, "node": NODE}


def render(board: Dashboard) -> str:
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build(out: Path, chart_files: Path) -> list[Path]:
    """Write every generated file under `out` (the mixin folder) and `chart_files`; return their paths."""
    written = []
    (out / "dashboards").mkdir(parents=True, exist_ok=True)
    (chart_files / "dashboards").mkdir(parents=True, exist_ok=True)
    for name, board in DASHBOARDS.items():
        text = render(board)
        for folder in (out / "dashboards", chart_files / "dashboards"):
            path = folder / f"{name}.json"
            path.write_text(text)
            written.append(path)
    target = chart_files / "alerts.yaml"
    shutil.copyfile(HERE / "alerts.yaml", target)
    written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="mixin folder to write dashboards/ into")
    parser.add_argument("--chart-files", type=Path, default=CHART_FILES, help="the chart's files/ folder")
    args = parser.parse_args()
    for path in build(args.out, args.chart_files):
        print(path)


if __name__ == "__main__":
    main()
