"""``agent_http_requests_total{handler, code}``: answers of the node's HTTP server, by endpoint group.

The handler label is a fixed name per endpoint group, never the raw path: paths carry config and instance
names, which would make one series per name.
"""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("agent_http_requests_total", "HTTP requests answered by the node, by endpoint group and status.",
                   ["handler", "code"])

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/agent/api/v1/config", "config_api"),
    ("/agent/api/v1/metrics/instance/", "remote_write"),
    ("/agent/api/v1/logs/instance/", "loki_push"),
    ("/agent/api/v1/", "agent_api"),
    ("/loki/api/v1/", "loki_push"),
    ("/api/v1/push", "loki_push"),
    ("/api/v1/raw", "loki_push"),
    ("/api/", "log_search"),
    ("/-/", "ops"),
    ("/metrics", "metrics"),
    ("/ui", "ui"),
)


def handler_of(path: str) -> str:
    """The endpoint group of `path` (``other`` when none matches)."""
    for prefix, name in _PREFIXES:
        if path.startswith(prefix):
            return name
    return "other"


def observe(path: str, status: int) -> None:
    REQUESTS.labels(handler_of(path), str(status)).inc()
