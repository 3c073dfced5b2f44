"""The web UI: static pages under /ui/ and two cluster-wide read endpoints the pages need.

The pages are plain HTML, CSS and JavaScript modules shipped in the package (service/ui/static): no build
step, no CDN, nothing fetched from the internet. They read the node's own APIs (config, ring, targets, log
search, chat). Two views need every node and have no API of their own, so the UI adds them:

- ``GET /ui/api/targets``: every ACTIVE node's targets (the Prometheus targets page, for the cluster);
- ``GET /ui/api/pipelines``: every node's WAL, remote_write queues, Loki clients and search store.

Both ask the other nodes over the node-to-node client, answer with what arrived, and name the nodes that did
not answer (``partial``). ``?scope=local`` answers for this node alone (what peers are asked).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service import __version__
from service.http.envelope import success
from service.http.peers import PEER_HEADER, PeerClient, get_json
from service.logs.search.cluster import PeersSource
from service.ui.pipelines import snapshot

STATIC = Path(__file__).resolve().parent / "static"
TargetsSource = Callable[[], list[dict[str, Any]]]


async def _gather(peers: PeersSource, client: PeerClient, request: Request, path: str,
                  timeout: float) -> tuple[str, dict[str, Any], list[str]]:
    """(this node's id, {peer: data}, peers that did not answer) for `path` asked of every other node."""
    node, others = peers()
    if request.query_params.get("scope") == "local" or PEER_HEADER.lower() in request.headers or not others:
        return node, {}, []
    headers = {PEER_HEADER: "1"}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]

    async def one(address: str) -> Any:
        status, body = await get_json(client, address, f"{path}?scope=local", headers, timeout)
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise ValueError(f"answered {status}")
        return body.get("data")

    results = await asyncio.gather(*(one(p.address) for p in others), return_exceptions=True)
    answers, missing = {}, []
    for peer, result in zip(others, results, strict=True):
        if isinstance(result, ValueError | OSError | TimeoutError | aiohttp.ClientError):
            missing.append(peer.node)
        elif isinstance(result, BaseException):
            raise result
        else:
            answers[peer.node] = result
    return node, answers, sorted(missing)


def ui_routes(targets: TargetsSource, peers: PeersSource, client: PeerClient, *, timeout: float = 2.0) -> list[Any]:
    """Routes of the UI. `targets` lists this node's targets; `peers` names this node and the other ACTIVE
    nodes; `client` reaches them."""

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=302)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def cluster_targets(request: Request) -> Response:
        node, answers, missing = await _gather(peers, client, request, "/ui/api/targets", timeout)
        rows = [{**t, "node": node} for t in targets()]
        for peer, data in answers.items():
            rows.extend({**t, "node": peer} for t in data.get("targets", []))
        return success({"node": node, "targets": rows, "partial": bool(missing), "missingNodes": missing})

    async def pipelines(request: Request) -> Response:
        node, answers, missing = await _gather(peers, client, request, "/ui/api/pipelines", timeout)
        nodes = [{"node": node, **snapshot()}]
        for data in answers.values():
            nodes.extend(data.get("nodes", []))
        return success({"node": node, "version": __version__, "nodes": nodes, "partial": bool(missing),
                        "missingNodes": missing})

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui", root, methods=["GET"]),
        Route("/ui/", index, methods=["GET"]),
        Route("/ui/api/targets", cluster_targets, methods=["GET"]),
        Route("/ui/api/pipelines", pipelines, methods=["GET"]),
        Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"),
    ]
