"""A node file with one logs instance and a Loki push listener, and Loki push bodies."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import snappy

from service.proto.push_pb2 import PushRequest


def logs_node_yaml(*, server_extra: str = "", **logs: Any) -> str:
    """A node file with one logs instance (`logs_section`'s arguments); `server_extra`: more server keys."""
    return ("\nserver:\n  log_level: info\n" + _indented(server_extra, 2) + "metrics:\n  wal_directory: data-agent\n"
            + logs_section(**logs))


def logs_section(*, name: str = "default", loki_url: str | None = None, batchwait: str = "50ms",
                 max_period: str = "200ms", client_extra: str = "", search: str | None = None,
                 instance_extra: str = "", scrape_configs: str = "", positions: str | Path = "positions") -> str:
    """A node file's `logs:` block with one instance `name`. With `loki_url`, one Loki client that batches and
    retries quickly, as tests want (`client_extra`: more of its keys). `search` is the instance's search block
    (a flow mapping) when given; `instance_extra` more instance keys, `scrape_configs` its scrape configs (list
    items): YAML text without the indentation of where it goes."""
    out = f"logs:\n  positions_directory: {positions}\n  configs:\n  - name: {name}\n"
    out += _indented(instance_extra, 4)
    if search is not None:
        out += f"    search: {search}\n"
    if loki_url is not None:
        out += (f"    clients:\n    - url: {loki_url}\n      batchwait: {batchwait}\n"
                f"      backoff_config: {{min_period: 50ms, max_period: {max_period}, max_retries: 0}}\n")
        out += _indented(client_extra, 6)
    if scrape_configs:
        out += "    scrape_configs:\n" + _indented(scrape_configs, 4)
    return out


def _indented(text: str, spaces: int) -> str:
    text = textwrap.dedent(text).strip("\n")
    return textwrap.indent(text, " " * spaces) + "\n" if text else ""


def node_yaml(loki_url: str, push_port: int, *, max_recv: int = 4 << 20, batchwait: str = "50ms",
              grpc_port: int | None = None, tls: dict[str, Path] | None = None, pushserver: str = "api",
              search: str | None = None, server_extra: str = "") -> str:
    """A node whose instance forwards to `loki_url` (external label cluster=c1) and serves the Loki push API
    on `push_port` (and gRPC on `grpc_port`, over TLS with `tls`'s server.crt and server.key), labelling what
    it receives pushserver=`pushserver` and dropping entries labelled __drop=yes."""
    grpc = f", grpc_listen_port: {grpc_port}" if grpc_port is not None else ""
    tls_cfg = (f", http_tls_config: {{cert_file: {tls['server.crt']}, key_file: {tls['server.key']}}}"
               if tls else "")
    return logs_node_yaml(loki_url=loki_url, batchwait=batchwait, client_extra="external_labels: {cluster: c1}",
                          search=search, server_extra=server_extra, scrape_configs=f"""
- job_name: api
  loki_push_api:
    server: {{http_listen_address: 127.0.0.1, http_listen_port: {push_port}{grpc},
              grpc_server_max_recv_msg_size: {max_recv}{tls_cfg}}}
    labels: {{pushserver: {pushserver}}}
    use_incoming_timestamp: true
  relabel_configs:
  - source_labels: [__drop]
    regex: yes
    action: drop
""")


def proto_body(streams: list[tuple[str, list[str]]], ts: int = 1_700_000_000) -> bytes:
    req = PushRequest()
    for labels, lines in streams:
        s = req.streams.add()
        s.labels = labels
        for i, line in enumerate(lines):
            e = s.entries.add()
            e.timestamp.seconds = ts
            e.timestamp.nanos = i
            e.line = line
    return snappy.compress(req.SerializeToString())
