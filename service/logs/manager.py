"""Runs the logs instances of the node config; re-creates only the ones whose config changed on reload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from service.instancediff import config_hash, diff
from service.log import get_logger
from service.logs.config import LogsConfig
from service.logs.grpc_server import GrpcPushServer, GrpcSettings
from service.logs.instance import LogsInstance, Sink
from service.logs.push import DEFAULT_MAX_MESSAGE_SIZE, PushError, PushRules
from service.logs.search.store import LogStore
from service.wal import metrics as wal_metrics

TargetsProvider = Callable[[], list[dict[str, Any]]]
"""Returns target dicts in the SPEC §2 shape: {instance, target_group, type, labels, discovered_labels,
ready, details}. File tailing registers one with :meth:`LogsManager.add_targets_provider`."""

_log = get_logger("logs.manager")


class LogsManager:
    def __init__(self, cfg: LogsConfig | None, wal_root: str, *, grpc: GrpcSettings | None = None,
                 **instance_options: Any) -> None:
        self.cfg = cfg or LogsConfig()
        self.grpc_settings = grpc  # the node's own gRPC push port (server.grpc_listen_port), when set
        self.grpc: GrpcPushServer | None = None
        self.wal_root = wal_root
        self.instances: dict[str, LogsInstance] = {}
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
        out: list[dict[str, Any]] = [t for name in sorted(self.instances) for t in self.instances[name].targets()]
        for provider in self._providers:
            out.extend(provider())
        return out

    def search_store(self) -> Any:
        """The store the log search API serves: the default instance's, else the first instance's that has one."""
        ordered = sorted(self.instances.values(), key=lambda i: (i.name != "default", i.name))
        return next((i.store for i in ordered if i.store is not None), None)

    def status(self) -> dict[str, Any]:
        """The logs part of /api/status: whether every Loki client forwards (details per instance)."""
        instances = {name: inst.status() for name, inst in sorted(self.instances.items())}
        return {"healthy": all(i["healthy"] for i in instances.values()), "instances": instances}

    def default_instance(self) -> LogsInstance:
        """``default``, or the only instance; PushError 400 naming the choices otherwise."""
        inst = self.instances.get("default")
        if inst is not None:
            return inst
        if len(self.instances) == 1:
            return next(iter(self.instances.values()))
        if not self.instances:
            raise PushError(400, "no logs instance is running")
        names = ", ".join(sorted(self.instances))
        raise PushError(400, f"several logs instances and none named default: choose one of {names} with "
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
            change = diff(self._digests, {name: config_hash(c) for name, c in wanted.items()})
            for name in change.stop:
                await self._stop_one(name, removed=True)
            for name in change.restart:
                await self._stop_one(name, removed=False)
            for name in change.restart + change.start:
                icfg = wanted[name]
                inst = LogsInstance(icfg, self.cfg.positions_directory, self.wal_root, **self._options)
                for sink in self._sinks:
                    inst.add_sink(sink)
                await inst.start()
                self.instances[name] = inst
                self._digests[name] = config_hash(icfg)
                if not icfg.search.enabled:  # restarted without search: its store's series went with it
                    LogStore.forget_metrics(name)
                _log.info("logs instance running", instance=name)

    async def _stop_one(self, name: str, *, removed: bool = True) -> None:
        """Stop ``name``; a ``removed`` instance's self metrics go with it (a restarted one's stay)."""
        inst = self.instances.pop(name)
        self._digests.pop(name, None)
        await inst.stop()
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
