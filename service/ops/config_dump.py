"""`GET /-/config`: the running node config as YAML, defaults applied, secrets masked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.config.schema import encode
from service.config.secrets import mask_secret_keys
from service.settings import NodeConfig

# Sections kept untyped: their secrets are masked by key name.
_UNTYPED = ("logs", "integrations", "traces")


def render_node_config(cfg: NodeConfig) -> str:
    data: dict[str, Any] = encode(cfg)
    for key in _UNTYPED:
        if key in data:
            data[key] = mask_secret_keys(data[key])
    server = data.get("server", {})
    for key in ("http_tls_config", "grpc_tls_config"):
        if key in server:
            server[key] = mask_secret_keys(server[key])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def config_routes(current: Callable[[], NodeConfig], enabled: bool) -> list[Route]:
    async def dump(request: Request) -> Response:
        if not enabled:
            return PlainTextResponse("404 - config endpoint is disabled", status_code=404)
        return PlainTextResponse(render_node_config(current()), media_type="text/plain; charset=utf-8")

    return [Route("/-/config", dump, methods=["GET"])]
