"""Agent API routes of the metrics subsystem (docs/http-api.md, Agent API)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http.envelope import JSON, success
from service.metrics.config import InstanceConfig
from service.metrics.decode_pool import DecodePool
from service.metrics.manager import InstanceManager
from service.metrics.receiver import PREFIX, WriteReceiver
from service.metrics.routing import WriteRouter
from service.metrics.scrape.routes import targets_routes


def failed_targets(configs: dict[str, InstanceConfig], reasons: dict[str, str]) -> list[dict[str, Any]]:
    """One `down` row per scrape job of an instance that failed to start, its reason as the scrape error."""
    return [{"instance": name, "target_group": sc.job_name, "endpoint": "", "state": "down",
             "discovered_labels": {}, "labels": {"job": sc.job_name}, "last_scrape": "0001-01-01T00:00:00Z",
             "scrape_duration_ms": 0, "scrape_error": f"instance failed to start: {reasons[name]}"}
            for name, cfg in configs.items() for sc in cfg.scrape_configs]


def metrics_api_routes(manager: InstanceManager, receiver: WriteReceiver | None = None, *,
                       router: WriteRouter | None = None, decode_pool: DecodePool | None = None) -> list[Route]:
    """`router` lets the write endpoint pass writes on to the node that runs the instance; `decode_pool`
    decodes large write bodies in ingest worker processes."""
    async def instances(request: Request) -> Response:
        """`data` stays the running names (as Grafana Agent answers); instances that failed to start are
        listed beside it."""
        failed = manager.failures()
        if not failed:
            return success(manager.running())
        body = {"status": "success", "data": manager.running(),
                "failed": [{"name": n, "error": failed[n]} for n in sorted(failed)]}
        return Response(orjson.dumps(body), media_type=JSON)

    def lookup(name: str) -> Any:
        return manager.get(name)

    def all_targets() -> list[dict[str, Any]]:
        running = (manager.get(name) for name in manager.running())
        found = list(itertools.chain.from_iterable(i.targets() for i in running if i is not None))
        return found + failed_targets(manager.failed_configs(), manager.failures())

    receiver = receiver or WriteReceiver(lookup, router=router, decode_pool=decode_pool)
    return [
        *targets_routes(all_targets),
        Route("/agent/api/v1/metrics/instances", instances, methods=["GET"]),
        Route("/agent/api/v1/instances", instances, methods=["GET"]),
        # matched on the raw path in the handler, so an escaped `/` in the name (`a%2Fb`) still routes here
        Route(PREFIX + "{rest:path}", receiver.handle, methods=["POST"]),
    ]
