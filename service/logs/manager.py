"""Runs the logs instances of the node config; re-creates only the ones whose config changed on reload.

A :class:`~service.logs.instance.LogsInstance` holds its WAL, its Loki clients and its push path. The manager
builds the rest around it: the ``loki_push_api`` listeners and file tailing that feed it, and the search store
that reads its WAL (attached as one more consumer). It starts them after the instance and stops them before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.http.auth import HTTPAuthConfig
from service.instancediff import config_hash, diff
from service.log import get_logger
from service.logs.config import LogsConfig, LogsInstanceConfig
from service.logs.files import FileTailing, file_scrape_configs
from service.logs.grpc_server import GrpcPushServer, GrpcSettings
from service.logs.instance import LogsInstance, Overloaded, Sink
from service.logs.push import DEFAULT_MAX_MESSAGE_SIZE, NoPushTarget, PushRules
from service.logs.search.store import LogStore
from service.logs.server import PushServer
from service.wal import metrics as wal_metrics

TargetsProvider = Callable[[], list[dict[str, Any]]]
"""Returns target dicts in the Agent API targets shape: {instance, target_group, type, labels, discovered_labels,
ready, details}. File tailing registers one with :meth:`LogsManager.add_targets_provider`."""

_log = get_logger("logs.manager")


@dataclass
class _Attached:
    """What the manager runs around one instance."""

    store: LogStore | None = None  # when `search.enabled`
    servers: list[PushServer] = field(default_factory=list)
    files: FileTailing | None = None  # when the instance tails files


class LogsManager:
    def __init__(self, cfg: LogsConfig | None, wal_root: str, *, grpc: GrpcSettings | None = None,
                 http_auth: HTTPAuthConfig | None = None, **instance_options: Any) -> None:
        self.cfg = cfg or LogsConfig()
        self.grpc_settings = grpc  # the node's own gRPC push port (server.grpc_listen_port), when set
        self.grpc: GrpcPushServer | None = None
        self.http_auth = http_auth  # the node's server.http_auth, required on loki_push_api listeners too
        self.wal_root = wal_root
        self.instances: dict[str, LogsInstance] = {}
        self._attached: dict[str, _Attached] = {}
        self._digests: dict[str, str] = {}
        self._providers: list[TargetsProvider] = []
        self._sinks: list[Sink] = []
        self._options = instance_options
        self._lock = asyncio.Lock()

    # --- hooks for other parts of the node ---------------------------------------------------------------
    def add_targets_provider(self, provider: TargetsProvider) -> None:
        self._providers.append(provider)

    def add_sink(self, sink: Sink) -> None:
        """Receive every accepted push of every instance (present and future)."""
        self._sinks.append(sink)
        for inst in self.instances.values():
            inst.add_sink(sink)

    def targets(self) -> list[dict[str, Any]]:
        """File targets of every instance in the SPEC §2 shape, then the providers'."""
        out: list[dict[str, Any]] = []
        for name in sorted(self._attached):
            files = self._attached[name].files
            if files is not None:
                out.extend({"instance": name, **t} for t in files.targets())
        for provider in self._providers:
            out.extend(provider())
        return out

    def search_store(self) -> LogStore | None:
        """The store the log search API serves: the default instance's, else the first instance's that has one."""
        ordered = sorted(self._attached, key=lambda name: (name != "default", name))
        return next((self._attached[n].store for n in ordered if self._attached[n].store is not None), None)

    def status(self) -> dict[str, Any]:
        """The logs part of /api/status: whether every Loki client forwards (details per instance)."""
        instances = {name: inst.status() for name, inst in sorted(self.instances.items())}
        return {"healthy": all(i["healthy"] for i in instances.values()), "instances": instances}

    def default_instance(self) -> LogsInstance:
        """``default``, or the only instance; NoPushTarget naming the choices otherwise (answered 400)."""
        inst = self.instances.get("default")
        if inst is not None:
            return inst
        if len(self.instances) == 1:
            return next(iter(self.instances.values()))
        if not self.instances:
            raise NoPushTarget("no logs instance is running")
        names = ", ".join(sorted(self.instances))
        raise NoPushTarget(f"several logs instances and none named default: choose one of {names} with "
                           "/agent/api/v1/logs/instance/<name>/push")

    # --- lifecycle -------------------------------------------------------------------------------------
    def _main_port_target(self) -> tuple[LogsInstance, PushRules, int]:
        inst = self.default_instance()
        return inst, inst.default_rules, DEFAULT_MAX_MESSAGE_SIZE

    async def start(self) -> None:
        await self.reload(self.cfg)
        if self.grpc_settings is not None:  # feeds the default instance, as the main HTTP port's push
            server = GrpcPushServer(self.grpc_settings, self._main_port_target)
            try:
                await server.start()
            except BaseException:
                await self.stop()
                raise
            self.grpc = server

    async def reload(self, cfg: LogsConfig | None) -> None:
        async with self._lock:
            self.cfg = cfg or LogsConfig()
            wanted = {c.name: c for c in self.cfg.configs}
            digests = {name: config_hash(c) for name, c in wanted.items()}
            change = diff(self._digests, digests)
            for name in change.stop:
                await self._stop_one(name, removed=True)
            for name in change.restart:
                await self._stop_one(name, removed=False)
            for name in change.restart + change.start:
                await self._start_one(wanted[name])
                self._digests[name] = digests[name]

    async def _start_one(self, icfg: LogsInstanceConfig) -> None:
        """Start the instance, then what reads its WAL besides its clients, then what feeds it."""
        inst = LogsInstance(icfg, self.wal_root, **self._options)
        for sink in self._sinks:
            inst.add_sink(sink)
        await inst.start()
        attached = _Attached()
        try:
            attached.store = await self._start_store(inst)
            for sc in icfg.push_configs():
                server = PushServer(inst, sc, self.http_auth)
                await server.start()
                attached.servers.append(server)
            if file_scrape_configs(icfg):
                files = FileTailing(icfg, self.cfg.positions_directory, inst.push)
                await files.start()
                attached.files = files
        except BaseException:
            await self._stop_attached(attached)
            await inst.stop()
            raise
        self.instances[icfg.name] = inst
        self._attached[icfg.name] = attached
        if not icfg.search.enabled:  # restarted without search: its store's series went with it
            LogStore.forget_metrics(icfg.name)
        _log.info("logs instance running", instance=icfg.name, clients=len(inst.clients),
                  push_servers=len(attached.servers), file_targets=len(attached.files.targets()) if attached.files
                  else 0)

    async def _start_store(self, inst: LogsInstance) -> LogStore | None:
        """The search store reads the instance's WAL from its own position (a consumer like a client)."""
        search = inst.cfg.search
        if not search.enabled:
            return None
        store = LogStore(search, search.directory(self.wal_root, inst.name), instance=inst.name, wal=inst.wal)
        await store.start()
        max_backlog = inst.max_backlog_bytes

        def check() -> None:
            if store.indexer is not None and store.indexer.lag_bytes > max_backlog:
                raise Overloaded(429, 5, "the search store is behind; retry later")

        inst.attach(store, check)
        return store

    @staticmethod
    async def _stop_attached(attached: _Attached) -> None:
        """Stop what feeds the instance (the store, a WAL consumer, stops with the instance)."""
        if attached.files is not None:
            await attached.files.stop()  # saves positions of what the WAL accepted
            attached.files = None
        for server in attached.servers:
            with contextlib.suppress(Exception):
                await server.stop()
        attached.servers = []

    async def _stop_one(self, name: str, *, removed: bool = True) -> None:
        """Stop ``name``; a ``removed`` instance's self metrics go with it (a restarted one's stay)."""
        inst = self.instances.pop(name)
        attached = self._attached.pop(name)
        self._digests.pop(name, None)
        await self._stop_attached(attached)
        await inst.stop()  # drains the clients and the attached store
        _log.info("logs instance stopped", instance=name)
        if removed:
            wal_metrics.forget(inst.wal_metrics_name)
            LogStore.forget_metrics(name)

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop()
            self.grpc = None
        async with self._lock:
            for name in list(self.instances):
                await self._stop_one(name)
