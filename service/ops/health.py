"""`/-/ready` and `/-/healthy`, with the agent's exact texts."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def health_routes(is_ready: Callable[[], bool]) -> list[Route]:
    async def ready(request: Request) -> Response:
        if is_ready():
            return PlainTextResponse("Agent is Ready.\n")
        return PlainTextResponse("Metrics are not ready yet.\n", status_code=503)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("Agent is Healthy.\n")

    return [Route("/-/ready", ready, methods=["GET"]), Route("/-/healthy", healthy, methods=["GET"])]
