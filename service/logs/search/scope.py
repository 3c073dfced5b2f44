"""Which answer a log search request gets: cluster-wide or this node's (`scope`), and how a cluster-wide
answer says that it is partial."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.http.peers import PEER_HEADER
from service.logs.search.cluster import ClusterView
from service.logs.search.envelope import JSON, invalid, ok

PARTIAL_HEADER = "X-Scraping-Service-Partial"


def scope_of(request: Request) -> str:
    scope = request.query_params.get("scope", "cluster")
    if scope not in ("cluster", "local"):
        raise invalid("scope must be cluster or local")
    return scope


def from_peer(request: Request) -> bool:
    return PEER_HEADER.lower() in request.headers


def partial_fields(view: ClusterView | None) -> dict[str, Any]:
    """What a cluster-wide answer adds to its data: whether it is partial, and which nodes are missing."""
    if view is None:
        return {}
    if not view.missing:
        return {"partial": False}
    return {"partial": True, "missingNodes": sorted(view.missing)}


def answer(data: Any, view: ClusterView | None) -> Response:
    """The success envelope; a partial cluster-wide answer also says so in a header (and, for list data, in
    the envelope beside `data`)."""
    extra = partial_fields(view)
    if not extra.get("partial"):
        if isinstance(data, dict):
            data = {**data, **extra}
        return ok(data)
    headers = {PARTIAL_HEADER: ",".join(extra["missingNodes"])}
    if isinstance(data, dict):
        return Response(orjson.dumps({"success": True, "data": {**data, **extra}}), media_type=JSON,
                        headers=headers)
    return Response(orjson.dumps({"success": True, "data": data, **extra}), media_type=JSON, headers=headers)
