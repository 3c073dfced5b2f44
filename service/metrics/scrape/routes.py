"""Targets API (docs/http-api.md): `/agent/api/v1/metrics/targets` and its `/agent/api/v1/targets` alias."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http.envelope import success
from service.metrics.scrape.manager import _sort_key

TargetsSource = Callable[[], Iterable[dict[str, object]]]


def targets_routes(all_targets: TargetsSource) -> list[Route]:
    """`all_targets()` yields every local instance's target dicts (ScrapeManager.targets() of each)."""

    async def targets(request: Request) -> Response:
        return success(sorted(all_targets(), key=_sort_key))

    return [
        Route("/agent/api/v1/metrics/targets", targets, methods=["GET"]),
        Route("/agent/api/v1/targets", targets, methods=["GET"]),
    ]
