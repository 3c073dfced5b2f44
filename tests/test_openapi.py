"""The OpenAPI document (`/api/openapi.json`) names exactly the operations the app serves, and is valid."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from starlette.requests import Request
from starlette.routing import Match, Route

from service.app import build_app
from service.node import Node, NodeOptions
from service.ops.openapi import PATH, document
from service.settings import parse_node_config
from tests.helpers.node_process import node_config

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def app_routes(tmp_path: Path) -> list[Route]:
    text = node_config().replace("data-agent", str(tmp_path / "data"))
    node = Node(parse_node_config(text), NodeOptions())
    app = build_app(node)
    while not hasattr(app, "routes"):  # AccessLog / RequireAuth wrap the Starlette app
        app = app.app  # type: ignore[attr-defined]
    return [r for r in app.routes if isinstance(r, Route)]


def served(routes: list[Route]) -> set[tuple[str, str]]:
    """(route path, method) pairs; HEAD is Starlette's automatic twin of GET."""
    return {(r.path, m.lower()) for r in routes for m in (r.methods or ()) if m != "HEAD"}


def documented() -> set[tuple[str, str]]:
    return {(path, m) for path, item in document()["paths"].items() for m in item if m in METHODS}


def concrete(path: str) -> str:
    """A request path for a documented template: each `{param}` becomes a sample segment."""
    return re.sub(r"\{[^}]+\}", "sample", path)


def matches(route: Route, path: str, method: str) -> bool:
    scope = {"type": "http", "path": path, "raw_path": path.encode(), "method": method.upper(),
             "root_path": "", "query_string": b"", "headers": []}
    match, _ = route.matches(scope)
    return match == Match.FULL


def test_every_served_operation_is_documented_and_vice_versa(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    docs = documented()
    undocumented = [(r.path, m) for r in routes for m in (r.methods or ()) if m != "HEAD"
                    if not any(matches(r, concrete(p), m) for p, dm in docs if dm == m.lower())]
    assert undocumented == [], f"served but not in the OpenAPI document: {undocumented}"
    unserved = [(p, m) for p, m in docs if not any(matches(r, concrete(p), m) for r in routes)]
    assert unserved == [], f"documented but not served: {unserved}"
    assert len(docs) >= len(served(routes)) >= 35  # sanity: the route list was really read


def test_document_is_openapi_31_and_served(tmp_path: Path) -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in METHODS
            assert op["responses"], f"{method} {path} documents no response"
            assert all(code.isdigit() for code in op["responses"]), (method, path)
            names = set(re.findall(r"\{([^}]+)\}", path))
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == params, f"{method} {path}: path params {names} vs declared {params}"
    route = next(r for r in app_routes(tmp_path) if r.path == PATH)
    scope = {"type": "http", "method": "GET", "path": PATH, "headers": [], "query_string": b""}
    resp = asyncio.run(route.endpoint(Request(scope)))
    assert resp.status_code == 200
    assert resp.media_type == "application/json"
    assert json.loads(resp.body) == doc
