"""Agent API routes of the metrics subsystem (SPEC §2)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.cluster.placement import Location
from service.http.envelope import success
from service.metrics.forward import WriteForwarder
from service.metrics.manager import InstanceManager
from service.metrics.receiver import PREFIX, WriteReceiver
from service.metrics.scrape.routes import targets_routes


def metrics_api_routes(manager: InstanceManager, receiver: WriteReceiver | None = None, *,
                       locate: Callable[[str], Location | None] | None = None,
                       forwarder: WriteForwarder | None = None,
                       stored: Callable[[str], Awaitable[bool | None]] | None = None) -> list[Route]:
    """`locate` and `forwarder` let the write endpoint pass writes on to the node that runs the instance."""
    async def instances(request: Request) -> Response:
        return success(manager.running())

    def lookup(name: str) -> Any:
        return manager.get(name)

    def all_targets() -> list[dict[str, Any]]:
        running = (manager.get(name) for name in manager.running())
        return list(itertools.chain.from_iterable(i.targets() for i in running if i is not None))

    receiver = receiver or WriteReceiver(lookup, locate=locate, forwarder=forwarder, stored=stored)
    return [
        *targets_routes(all_targets),
        Route("/agent/api/v1/metrics/instances", instances, methods=["GET"]),
        Route("/agent/api/v1/instances", instances, methods=["GET"]),
        # matched on the raw path in the handler, so an escaped `/` in the name (`a%2Fb`) still routes here
        Route(PREFIX + "{rest:path}", receiver.handle, methods=["POST"]),
    ]
