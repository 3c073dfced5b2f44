"""Ring API (ours): GET /agent/api/v1/cluster/ring, POST /agent/api/v1/cluster/reshard."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.cluster.cluster import Cluster
from service.http.envelope import error, success
from service.kv.store import KVError, KVUnavailable

RING = "/agent/api/v1/cluster/ring"
RESHARD = "/agent/api/v1/cluster/reshard"


def cluster_routes(get_cluster: Callable[[], Cluster | None]) -> list[Route]:
    async def ring(request: Request) -> Response:
        cluster = get_cluster()
        if cluster is None:
            return error(404, "scraping service is not enabled")
        try:
            return success(await cluster.status())
        except KVUnavailable as exc:
            return error(503, f"KV store unavailable: {exc}")
        except KVError as exc:
            return error(500, f"KV store error: {exc}")

    async def reshard(request: Request) -> Response:
        cluster = get_cluster()
        if cluster is None:
            return error(404, "scraping service is not enabled")
        result = await cluster.reshard()
        if not result.ok:
            return error(503, f"reshard failed: {result.error}")
        return success(result.summary())

    return [Route(RING, ring, methods=["GET"]), Route(RESHARD, reshard, methods=["POST"])]
