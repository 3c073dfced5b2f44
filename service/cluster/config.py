"""The `scraping_service` block of the node file (Grafana Agent's `cluster.Config`) with its ring and
lifecycler settings (dskit's `ring.Config` and `ring.LifecyclerConfig`), plus our membership lease and
claims."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.config.durations import GoDuration
from service.config.errors import ConfigError
from service.kv.config import KVStoreConfig


@dataclass
class RingConfig:
    __yaml_type__ = "ring.Config"

    kvstore: KVStoreConfig = field(default_factory=lambda: KVStoreConfig(prefix="collectors/"))
    heartbeat_timeout: GoDuration = GoDuration(60)
    replication_factor: int = 1
    zone_awareness_enabled: bool = False
    excluded_zones: str = ""


@dataclass
class LifecyclerConfig:
    __yaml_type__ = "ring.LifecyclerConfig"

    ring: RingConfig = field(default_factory=RingConfig)
    num_tokens: int = 128
    heartbeat_period: GoDuration = GoDuration(5)
    heartbeat_timeout: GoDuration = GoDuration(60)
    observe_period: GoDuration = GoDuration(0)
    join_after: GoDuration = GoDuration(0)
    min_ready_duration: GoDuration = GoDuration(15)
    interface_names: list[str] = field(default_factory=list)
    final_sleep: GoDuration = GoDuration(0)
    tokens_file_path: str = ""
    availability_zone: str = ""
    unregister_on_shutdown: bool = True
    readiness_check_ring_health: bool = True
    address: str = ""
    port: int = 0
    id: str = ""
    # Ours: the membership lease. A crashed node leaves the ring (and its configs' claims lapse) this long
    # after its last heartbeat; keep it a few heartbeat periods.
    lease_ttl: GoDuration = GoDuration(15)
    # Ours: where per-config claims (which node runs a config) live; "" = `<ring prefix>` with "-claims/".
    claims_prefix: str = ""

    def check(self) -> None:
        if float(self.heartbeat_period) <= 0:
            raise ConfigError("lifecycler.heartbeat_period must be greater than 0s")
        if float(self.lease_ttl) < 2 * float(self.heartbeat_period):
            raise ConfigError("lifecycler.lease_ttl must be at least twice lifecycler.heartbeat_period")


@dataclass
class ScrapingServiceConfig:
    __yaml_type__ = "cluster.Config"

    enabled: bool = False
    reshard_interval: GoDuration = GoDuration(60)
    reshard_timeout: GoDuration = GoDuration(30)
    cluster_reshard_event_timeout: GoDuration = GoDuration(30)
    kvstore: KVStoreConfig = field(default_factory=KVStoreConfig)
    lifecycler: LifecyclerConfig = field(default_factory=LifecyclerConfig)
    dangerous_allow_reading_files: bool = False
    # Ours: CPU time one config PUT may spend being parsed and validated (in the validation process) before
    # it is refused as too costly. A 4 MiB body of 130,000 targets costs about 9 s.
    config_validation_cpu_budget: GoDuration = GoDuration(30)

    def check(self) -> None:
        if self.reshard_interval <= 0:
            raise ConfigError("scraping_service.reshard_interval must be greater than 0s")
        if self.config_validation_cpu_budget <= 0:
            raise ConfigError("scraping_service.config_validation_cpu_budget must be greater than 0s")
