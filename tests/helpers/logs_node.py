"""A node file with one logs instance and a Loki push listener, and Loki push bodies."""

from __future__ import annotations

import snappy

from service.proto.push_pb2 import PushRequest


def node_yaml(loki_url: str, push_port: int, *, max_recv: int = 4 << 20, batchwait: str = "50ms") -> str:
    return f"""
server:
  log_level: info
metrics:
  wal_directory: data-agent
logs:
  positions_directory: positions
  configs:
  - name: default
    clients:
    - url: {loki_url}
      batchwait: {batchwait}
      external_labels: {{cluster: c1}}
      backoff_config: {{min_period: 50ms, max_period: 200ms, max_retries: 0}}
    scrape_configs:
    - job_name: api
      loki_push_api:
        server: {{http_listen_address: 127.0.0.1, http_listen_port: {push_port},
                  grpc_server_max_recv_msg_size: {max_recv}}}
        labels: {{pushserver: api}}
        use_incoming_timestamp: true
      relabel_configs:
      - source_labels: [__drop]
        regex: yes
        action: drop
"""


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
