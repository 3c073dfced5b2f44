"""Integrations SD API: the node's built-in `agent` integration (its own /metrics) as an http_sd target.

Shapes follow Grafana Agent's integrations-next API: `GET /agent/api/v1/metrics/integrations/sd` answers a
bare JSON array in Prometheus http_sd format, filtered by `integrations=a,b` and `instance=`. Integrations
are not scraped by the node itself (autoscrape is "0"), so `/integrations/targets` lists no targets: point
any Prometheus-compatible scraper (or a metrics instance's http_sd_configs) at the SD endpoint instead.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from service.http.envelope import success
from service.settings import BUILT_IN

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def enabled_integrations(integrations: dict[str, Any]) -> list[str]:
    """Built-in integrations present in the node file and not switched off (`enabled: false`)."""
    out = []
    for name in BUILT_IN:
        block = integrations.get(name)
        if name in integrations and not (isinstance(block, dict) and block.get("enabled") is False):
            out.append(name)
    return out


def sd_groups(names: list[str], address: str, hostname: str) -> list[dict[str, Any]]:
    return [{
        "targets": [address],
        "labels": {
            "instance": address,
            "job": f"integrations/{name}",
            "agent_hostname": hostname,
            "__metrics_path__": "/metrics",
            "__meta_agent_integration_name": name,
            "__meta_agent_integration_instance": address,
            "__meta_agent_integration_autoscrape": "0",
        },
    } for name in names]


def integrations_routes(integrations: Callable[[], dict[str, Any]], address: Callable[[], str]) -> list[Route]:
    hostname = socket.gethostname()

    async def sd(request: Request) -> Response:
        raw = request.scope.get("query_string", b"").decode("latin-1")
        if _BAD_ESCAPE.search(raw):
            return PlainTextResponse(f"invalid query parameters: invalid URL escape in {raw!r}", status_code=400)
        names = enabled_integrations(integrations())
        wanted = request.query_params.get("integrations")
        if wanted:
            allowed = {n.strip() for n in wanted.split(",") if n.strip()}
            names = [n for n in names if n in allowed]
        groups = sd_groups(names, address(), hostname)
        instance = request.query_params.get("instance")
        if instance:
            groups = [g for g in groups if g["labels"]["__meta_agent_integration_instance"] == instance]
        return JSONResponse(groups)

    async def targets(request: Request) -> Response:
        return success([])  # nothing is autoscraped

    return [
        Route("/agent/api/v1/metrics/integrations/sd", sd, methods=["GET"]),
        Route("/agent/api/v1/metrics/integrations/targets", targets, methods=["GET"]),
    ]
