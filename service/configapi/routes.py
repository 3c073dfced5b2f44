"""Config management API (docs/config-api.md): list, get, put and delete named metrics instance configs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.config.errors import ConfigError
from service.configapi.store import ConfigStore, UniquenessError
from service.configapi.worker import RETRY_AFTER, Busy, ValidationWorker
from service.http.body import read_body
from service.http.envelope import success
from service.http.errors import HTTPError, guarded, not_found, render_agent
from service.http.paths import InvalidName, decode_name, raw_segment
from service.kv.store import KVError, KVUnavailable
from service.log import get_logger
from service.metrics.config import GlobalConfig, apply_defaults, job_names, parse_instance, render_instance

CONFIGS = "/agent/api/v1/configs"
CONFIG = "/agent/api/v1/config/"
DEFAULT_BODY_LIMIT = 4 << 20

_log = get_logger("configapi")
_CHANGES = {
    event: Counter(f"agent_metrics_ha_configs_{event}_total", f"Total number of configs {event} through the API.")
    for event in ("created", "updated", "deleted")
}
UNREADABLE = Counter("agent_configapi_unreadable_stored_configs_total",
                     "GETs of a stored config whose value could not be decoded or parsed.")
UNREADABLE_STORED = Gauge("agent_configapi_unreadable_stored_config",
                          "1 while the last GET of this stored config found it unreadable.", ["config"])


def stored_job_names(yaml_text: str, name: str) -> set[str]:
    return job_names(parse_instance(yaml_text, name))


def _http_error(exc: Exception, request: Request) -> HTTPError:
    """The config API's domain failures in the envelope: validation busy 503 + Retry-After, KV unreachable
    503, anything else 500 (the envelope, never a bare 500 page; the traceback goes to the log)."""
    if isinstance(exc, Busy):
        return HTTPError(503, f"config validation is busy, retry later: {exc}", {"Retry-After": str(RETRY_AFTER)})
    if isinstance(exc, KVUnavailable):
        return HTTPError(503, f"KV store unavailable: {exc}")
    if isinstance(exc, KVError):
        _log.error("KV store error", err=str(exc))
        return HTTPError(500, f"KV store error: {exc}")
    _log.exception("config API request failed", path=request.url.path)
    return HTTPError(500, f"internal error: {exc}")


Handler = Callable[["ConfigAPI", Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """404 while no config store runs; every failure answered in the envelope (see _http_error)."""

    @guarded(render_agent, _http_error)
    @functools.wraps(handler)
    async def wrapper(self: ConfigAPI, request: Request) -> Response:
        if self.store is None:
            raise HTTPError(404, "no config store running")
        return await handler(self, request)

    return wrapper


def _unreadable(name: str, reason: str) -> HTTPError:
    """A stored value this node cannot read (written around the API, or by a newer Agent): 422 naming the
    reason, never a 500; logged and counted so the operator sees it."""
    _log.warning("stored config cannot be read", config=name, err=reason)
    UNREADABLE.inc()
    UNREADABLE_STORED.labels(name).set(1)
    return HTTPError(422, f"failed to get config {name}: stored value cannot be read: {reason}")


class ConfigAPI:
    def __init__(self, store: ConfigStore | None, global_cfg: GlobalConfig, *, allow_reading_files: bool,
                 read_api_enabled: bool = True, body_limit: int = DEFAULT_BODY_LIMIT,
                 validator: ValidationWorker | None = None) -> None:
        self.store = store
        self.validator = validator or ValidationWorker()
        self.accept_unsupported_sd = False  # metrics.accept_unsupported_sd of the node file
        self.global_cfg = global_cfg
        self.allow_reading_files = allow_reading_files
        self.read_api_enabled = read_api_enabled
        self.body_limit = body_limit

    def routes(self) -> list[Route]:
        return [
            Route(CONFIGS, self.list_configs, methods=["GET"]),
            Route(CONFIGS + "/{name:anything}", self.get_config, methods=["GET"]),
            Route(CONFIG + "{name:anything}", self.put_config, methods=["PUT", "POST"]),
            Route(CONFIG + "{name:anything}", self.delete_config, methods=["DELETE"]),
        ]

    def _name(self, request: Request, prefix: str) -> str | None:
        segment = raw_segment(request, prefix)
        if segment is None:
            return None
        try:
            return decode_name(segment)
        except InvalidName as exc:
            raise HTTPError(400, f"could not decode config name: {exc}") from None

    @_guarded
    async def list_configs(self, request: Request) -> Response:
        assert self.store is not None
        return success({"configs": await self.store.names()})

    async def get_config(self, request: Request) -> Response:
        if not self.read_api_enabled:
            return PlainTextResponse("404 - config endpoint is disabled", status_code=404)
        return await self._get_config(request)

    @_guarded
    async def _get_config(self, request: Request) -> Response:
        assert self.store is not None
        name = self._name(request, CONFIGS + "/")
        if name is None:
            return await not_found(request)
        try:
            text = await self.store.get(name)
        except (ValueError, OSError, EOFError, zlib.error) as exc:  # not gzip YAML, or not UTF-8
            raise _unreadable(name, f"the stored value cannot be decoded: {exc}") from None
        if text is None:
            raise HTTPError(404, f"configuration {name} does not exist")
        # In a thread: a stored config may be large (a PUT's parse runs in the validation worker).
        value = await asyncio.to_thread(self._render_stored, text, name)
        with contextlib.suppress(KeyError):
            UNREADABLE_STORED.remove(name)
        return success({"value": value})

    def _render_stored(self, text: str, name: str) -> str:
        try:
            cfg = parse_instance(text, name)
        except ConfigError as exc:
            raise _unreadable(name, str(exc)) from None
        # A config stored before a rule changed, or written around the API, is shown as parsed.
        with contextlib.suppress(ConfigError):
            cfg = apply_defaults(cfg, self.global_cfg)
        return render_instance(cfg)

    @_guarded
    async def put_config(self, request: Request) -> Response:
        assert self.store is not None
        name = self._name(request, CONFIG)
        if name is None:
            return await not_found(request)
        body = await read_body(request, self.body_limit)
        checked = await self.validator.validate(body, name, self.global_cfg, self.allow_reading_files,
                                                self.accept_unsupported_sd)
        try:
            created = await self.store.put(name, checked.stored, set(checked.jobs))
        except UniquenessError as exc:
            raise HTTPError(400, f"failed to check uniqueness of config: {exc}") from None
        _CHANGES["created" if created else "updated"].inc()
        _log.info("config stored", config=name, created=created)
        return success(status=201 if created else 200)

    @_guarded
    async def delete_config(self, request: Request) -> Response:
        assert self.store is not None
        name = self._name(request, CONFIG)
        if name is None:
            return await not_found(request)
        if not await self.store.delete(name):
            raise HTTPError(404, f"configuration {name} does not exist")
        _CHANGES["deleted"].inc()
        _log.info("config deleted", config=name)
        return success()
