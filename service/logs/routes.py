"""HTTP routes of the logs subsystem: the Loki push receiver and the Agent API logs endpoints.

Main port: ``/loki/api/v1/push`` and ``/api/v1/push`` (+ ``raw``) feed the instance named ``default``, or
the only instance; ``/agent/api/v1/logs/instance/{name}/push`` and ``.../raw`` address one by name.
Each ``loki_push_api`` listener serves the same handlers bound to its own instance and rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.http.body import read_body
from service.http.envelope import success
from service.http.errors import HTTPError, guarded, render_text
from service.logs import metrics
from service.logs.instance import LogsInstance
from service.logs.push import DEFAULT_MAX_MESSAGE_SIZE, NoPushTarget, PushRules, check_tenant
from service.wal import WALError


class Instances(Protocol):
    """What the main-port routes need of the logs manager (which imports this module's listeners)."""

    @property
    def instances(self) -> Mapping[str, LogsInstance]: ...

    def default_instance(self) -> LogsInstance: ...

    def targets(self) -> list[dict[str, Any]]: ...

Resolve = Callable[[Request], tuple[LogsInstance, PushRules, int]]
"""(instance, rules, max message size) for a request, or HTTPError / NoPushTarget."""


def _http_error(exc: Exception, request: Request) -> HTTPError | None:
    """A push's domain failures as Loki answers them (text/plain); anything else is not ours to map."""
    if isinstance(exc, NoPushTarget):
        return HTTPError(400, str(exc))
    if isinstance(exc, WALError):
        return HTTPError(500, f"WAL append failed: {exc}")
    return None


def _observe(request: Request, route: str, status: int, start: float, body_len: int, resp_len: int) -> None:
    method = request.method
    metrics.REQUEST_DURATION.labels(method, route, str(status), "false").observe(time.perf_counter() - start)
    metrics.REQUEST_BYTES.labels(method, route).observe(body_len)
    metrics.RESPONSE_BYTES.labels(method, route).observe(resp_len)


def push_endpoint(resolve: Resolve, route: str, *, raw: bool = False) -> Callable:
    @guarded(render_text, _http_error)
    async def accept(request: Request) -> Response:
        instance, rules, limit = resolve(request)
        instance.check_capacity()
        tenant = check_tenant(request.headers.get("x-scope-orgid"))
        body = await read_body(request, limit)
        request.state.push_bytes = len(body)
        errors: list[str] = []
        if raw:
            req = rules.raw_request(body)
            if req.streams:
                await instance.push(req, tenant, sum(len(s.entries) for s in req.streams))
        else:
            errors = await instance.accept(rules, body, request.headers.get("content-type"),
                                           request.headers.get("content-encoding"), limit, tenant)
        if errors:
            raise HTTPError(400, errors[-1])
        return Response(status_code=204)

    async def handler(request: Request) -> Response:
        start = time.perf_counter()
        resp = await accept(request)
        _observe(request, route, resp.status_code, start, getattr(request.state, "push_bytes", 0), len(resp.body))
        return resp

    return handler


async def ready(request: Request) -> Response:
    return PlainTextResponse("ready")


def push_routes(resolve: Resolve) -> list[Route]:
    """The Loki-compatible routes (``loki.source.api``) bound to ``resolve``."""
    return [
        Route("/loki/api/v1/push", push_endpoint(resolve, "loki_api_v1_push"), methods=["POST"]),
        Route("/api/v1/push", push_endpoint(resolve, "api_v1_push"), methods=["POST"]),
        Route("/loki/api/v1/raw", push_endpoint(resolve, "loki_api_v1_raw", raw=True), methods=["POST"]),
        Route("/api/v1/raw", push_endpoint(resolve, "api_v1_raw", raw=True), methods=["POST"]),
        Route("/ready", ready, methods=["GET"]),
    ]


def logs_routes(manager: Instances) -> list[Route]:
    """Routes for the node's main port."""

    def default(request: Request) -> tuple[LogsInstance, PushRules, int]:
        inst = manager.default_instance()
        return inst, inst.default_rules, DEFAULT_MAX_MESSAGE_SIZE

    def named(request: Request) -> tuple[LogsInstance, PushRules, int]:
        name = request.path_params["name"]
        inst = manager.instances.get(name)
        if inst is None:
            raise HTTPError(400, f"instance {name} does not exist")
        return inst, inst.default_rules, DEFAULT_MAX_MESSAGE_SIZE

    async def instances(request: Request) -> Response:
        return success(sorted(manager.instances))

    async def targets(request: Request) -> Response:
        return success(manager.targets())

    return [
        *(r for r in push_routes(default) if r.path != "/ready"),
        Route("/ready", ready, methods=["GET"]),
        Route("/agent/api/v1/logs/instance/{name}/push", push_endpoint(named, "agent_logs_push"),
              methods=["POST"]),
        Route("/agent/api/v1/logs/instance/{name}/raw", push_endpoint(named, "agent_logs_raw", raw=True),
              methods=["POST"]),
        Route("/agent/api/v1/logs/instances", instances, methods=["GET"]),
        Route("/agent/api/v1/logs/targets", targets, methods=["GET"]),
    ]
