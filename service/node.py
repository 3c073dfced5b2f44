"""One node: owns the subsystems a node config asks for and starts/stops them in order."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from service import log
from service.cluster.cluster import Cluster
from service.cluster.placement import Where
from service.config.errors import ConfigError
from service.config.schema import encode
from service.configapi.routes import ConfigAPI, stored_job_names
from service.configapi.store import ConfigStore
from service.kv.factory import open_store
from service.kv.store import KVError, KVStore
from service.log import get_logger
from service.logs.grpc_server import GrpcSettings
from service.logs.manager import LogsManager
from service.logs.push import DEFAULT_MAX_MESSAGE_SIZE
from service.logs.search.cluster import ClusterSearch, Peer
from service.logs.search.config import ChatConfig, SearchConfig
from service.metrics.config import InstanceConfig, apply_defaults
from service.metrics.forward import WriteForwarder
from service.metrics.instance import MetricsInstance
from service.metrics.manager import InstanceManager
from service.metrics.routing import ABSENT, PENDING, Destination, Verdict, WriteRouter
from service.metrics.scrape.sharding import TargetShards
from service.nodecheck import load_node_config
from service.ops.nodemetrics import LoopLagMonitor, NodeCollector, register_node_collector
from service.settings import NodeConfig, ServerConfig

_log = get_logger("node")


def main_grpc_settings(server: ServerConfig) -> GrpcSettings | None:
    """The node's own gRPC push port (``server.grpc_listen_port``; 0 = none): the main HTTP port's address
    default, TLS, credentials and 100 MiB message limit."""
    if not server.grpc_listen_port:
        return None
    return GrpcSettings("server", server.grpc_listen_address or "127.0.0.1", server.grpc_listen_port,
                        server.http_tls_config, server.http_auth, DEFAULT_MAX_MESSAGE_SIZE,
                        DEFAULT_MAX_MESSAGE_SIZE, graceful_shutdown_timeout=float(server.graceful_shutdown_timeout))


@dataclass
class NodeOptions:
    """Command-line choices that are not in the node file."""

    config_file: str = ""
    expand_env: bool = False
    read_api_enabled: bool = True
    advertise_address: str = ""  # host:port others can reach this node at (default for the ring record)


class Node:
    def __init__(self, cfg: NodeConfig, options: NodeOptions) -> None:
        self.cfg = cfg
        self.options = options
        self.kv: KVStore | None = None
        self.config_store: ConfigStore | None = None
        self.cluster: Cluster | None = None
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self.manager = InstanceManager(self._new_instance)
        self.target_shards = TargetShards()  # sharding: targets configs; the cluster feeds it ring views
        self.config_api = ConfigAPI(None, cfg.metrics.global_, allow_reading_files=False,
                                    read_api_enabled=options.read_api_enabled)
        self._open_config_store()
        # logs subsystem (hook): instances from `logs.configs`, WAL under metrics.wal_directory/logs
        self.logs = LogsManager(cfg.logs, cfg.metrics.wal_directory, http_auth=cfg.server.http_auth,
                                grpc=main_grpc_settings(cfg.server))
        # writes for an instance another node runs are passed on to it (see metrics/forward.py)
        self.write_forwarder = WriteForwarder(cfg.server.http_tls_config)
        self.write_router = WriteRouter(self.locate_instance, self.write_forwarder, self.config_stored)
        self.loop_lag = LoopLagMonitor(self._probe_kv)
        register_node_collector(NodeCollector(lambda: self.cfg.metrics.wal_directory, self.all_targets))
        search = self.search_config()
        # log search answers for every ACTIVE node, over the same node-to-node client
        self.search_cluster = ClusterSearch(self.search_peers, self.write_forwarder.peers,
                                            timeout=float(search.peer_timeout), concurrency=search.peer_concurrency)

    def _open_config_store(self) -> None:
        service = self.cfg.metrics.scraping_service
        self.kv = open_store(service.kvstore, self.cfg.metrics.wal_directory) if service.enabled else None
        self.config_store = (ConfigStore(self.kv, service.kvstore.prefix, stored_job_names)
                             if self.kv is not None else None)
        self.config_api.store = self.config_store
        self.config_api.global_cfg = self.cfg.metrics.global_
        self.config_api.allow_reading_files = service.dangerous_allow_reading_files
        self.config_api.validator.cpu_budget = float(service.config_validation_cpu_budget)
        self.config_api.accept_unsupported_sd = self.cfg.metrics.accept_unsupported_sd
        self.cluster = (Cluster(self.kv, self.manager, service, self.cfg.metrics.global_,
                                default_address=self.options.advertise_address, on_synced=self._synced,
                                target_shards=self.target_shards)
                        if self.kv is not None else None)

    def locate_instance(self, name: str) -> Destination | None:
        """Where the cluster's last reshard placed the config `name`, for the write router: None when the
        placement does not know the name (the router then asks the store), absent without a cluster."""
        if self.cluster is None:
            return ABSENT
        location = self.cluster.sharder.placement.locate(name)
        if location.where is Where.UNKNOWN:
            return None
        if location.where is Where.ELSEWHERE:
            return Destination(Verdict.PEER, location.node, location.address)
        return PENDING  # owned here and starting, or owned by nobody for a moment

    async def config_stored(self, name: str) -> bool | None:
        """Whether the KV store holds a config `name` now; None when it cannot say within a second (the
        store is unreachable), so that a write is asked to retry rather than refused."""
        if self.config_store is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                return await self.config_store.get(name) is not None
        except (KVError, TimeoutError):
            return None

    async def _probe_kv(self) -> None:
        if self.kv is not None:
            await self.kv.get(self.cfg.metrics.scraping_service.kvstore.prefix)

    def _synced(self) -> None:
        if not self.ready:
            self.ready = True
            _log.info("node ready: first reshard done")

    def _new_instance(self, cfg: InstanceConfig) -> MetricsInstance:
        return MetricsInstance(cfg, self.cfg.metrics.global_, self.cfg.metrics.wal_directory,
                               shards=self.target_shards)

    def static_configs(self) -> dict[str, InstanceConfig]:
        """`metrics.configs` from the node file, with the global defaults applied."""
        return {c.name: apply_defaults(c, self.cfg.metrics.global_) for c in self.cfg.metrics.configs}

    async def start(self) -> None:
        self.loop_lag.start()
        for section in self.cfg.unimplemented():
            _log.warning("config section is accepted but not implemented yet; it is ignored", section=section)
        _log.info("WAL directory (a relative wal_directory is relative to the working directory)",
                  wal_directory=os.path.abspath(self.cfg.metrics.wal_directory))
        if self.kv is not None:
            await self.kv.start()
            _log.info("KV store started", store=self.cfg.metrics.scraping_service.kvstore.store)
            await self.config_api.validator.start()
        await self.logs.start()  # logs subsystem (hook)
        if self.cluster is not None:
            self.cluster.start()  # ready after its first reshard
            return
        await self.manager.apply(self.static_configs())
        self.ready = True
        _log.info("node ready")

    def search_config(self) -> SearchConfig:
        """The search settings of the logs instance whose store the search API serves (`default` first)."""
        configs = sorted(self.cfg.logs.configs if self.cfg.logs else [], key=lambda c: (c.name != "default", c.name))
        return next((c.search for c in configs if c.search.enabled), SearchConfig())

    def chat_config(self) -> ChatConfig:
        """The chat provider of the logs instance whose store the search API serves."""
        return self.search_config().chat

    def all_targets(self) -> list[dict[str, Any]]:
        """This node's scrape targets, over every running instance."""
        running = (self.manager.get(name) for name in self.manager.running())
        return [t for inst in running if inst is not None for t in inst.targets()]

    def search_peers(self) -> tuple[str, list[Peer]]:
        """This node's id and the other ACTIVE nodes, as the last reshard saw them (none without a cluster)."""
        if self.cluster is None:
            return "", []
        own = self.cluster.node_id
        addresses = self.cluster.sharder.placement.addresses
        return own, [Peer(node, address) for node, address in sorted(addresses.items()) if node != own]

    async def status(self) -> dict[str, Any]:
        """Parts of the node for /api/status: the KV store, the cluster and the instances."""
        parts: dict[str, Any] = {"metrics": {"instances": len(self.manager.running()), "ready": self.ready}}
        if self.kv is not None:
            try:
                await asyncio.wait_for(self.kv.get(self.cfg.metrics.scraping_service.kvstore.prefix), 2.0)
                parts["kv"] = {"healthy": True, "store": self.cfg.metrics.scraping_service.kvstore.store}
            except (KVError, TimeoutError) as exc:
                parts["kv"] = {"healthy": False, "error": str(exc) or "timeout"}
        if self.cluster is not None:
            parts["cluster"] = {"node": self.cluster.node_id, "synced": self.cluster.synced}
        parts["logs"] = self.logs.status()  # logs subsystem (hook): Loki clients forwarding or failing
        return parts

    async def reload(self) -> None:
        """Re-read the node file and apply what changed. Raises ConfigError (and changes nothing) when
        the file cannot be loaded or is invalid."""
        async with self._reload_lock:
            new = await asyncio.to_thread(load_node_config, self.options.config_file, expand=self.options.expand_env)
            old = self.cfg
            self.cfg = new
            log.configure(new.server.log_level, new.server.log_format)
            service_changed = encode(old.metrics.scraping_service) != encode(new.metrics.scraping_service)
            if service_changed or old.metrics.wal_directory != new.metrics.wal_directory:
                if self.cluster is not None:
                    await self.cluster.stop()
                if self.kv is not None:
                    await self.kv.close()
                try:
                    self._open_config_store()
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
                if self.kv is not None:
                    await self.kv.start()
                if self.cluster is not None:
                    self.cluster.start()
            else:
                self.config_api.global_cfg = new.metrics.global_
                self.config_api.validator.cpu_budget = float(new.metrics.scraping_service.config_validation_cpu_budget)
                self.config_api.accept_unsupported_sd = new.metrics.accept_unsupported_sd
                if self.cluster is not None:
                    self.cluster.set_global(new.metrics.global_)
            if self.cluster is None:
                await self.manager.apply(self.static_configs())
            await self.logs.reload(new.logs)  # logs subsystem (hook)
            _log.info("config reloaded", scraping_service_changed=service_changed)

    def _flush_deadline(self) -> float:
        """The longest remote_flush_deadline of the running instances: how long stopping them may take."""
        cfgs = [getattr(self.manager.get(n), "cfg", None) for n in self.manager.running()]
        return max((float(c.remote_flush_deadline) for c in cfgs if c is not None), default=0.0)

    def _drain_timeout(self) -> float:
        clients = [c for inst in (self.cfg.logs.configs if self.cfg.logs else []) for c in inst.clients]
        return max((float(c.drain_timeout) for c in clients), default=0.0)

    async def stop(self) -> None:
        self.ready = False
        started = asyncio.get_running_loop().time()
        if self.cluster is not None:
            _log.info("shutdown: leaving the ring, stopping this node's instances", phase="cluster",
                      instances=len(self.manager.running()), deadline=f"{self._flush_deadline():g}s",
                      kv_deadline=f"{self.cluster.leave_timeout:g}s")
            await self.cluster.stop()  # LEAVING, stop own instances, release claims, deregister
        if self.manager.running():
            _log.info("shutdown: stopping metrics instances, flushing remote_write", phase="metrics",
                      instances=len(self.manager.running()), deadline=f"{self._flush_deadline():g}s")
        await self.manager.stop_all()
        _log.info("shutdown: stopping logs instances, draining Loki clients", phase="logs",
                  instances=len(self.logs.instances), deadline=f"{self._drain_timeout():g}s")
        await self.logs.stop()  # logs subsystem (hook)
        if self.kv is not None:
            _log.info("shutdown: closing the KV store", phase="kv")
            await self.kv.close()
        await self.write_forwarder.close()
        await self.config_api.validator.stop()
        await self.loop_lag.stop()
        _log.info("node stopped", took=f"{asyncio.get_running_loop().time() - started:.2f}s")
