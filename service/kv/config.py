"""The `kvstore` block of the node file (dskit's `kv.Config`): which store, its prefix, and each store's
settings (etcd, and our embedded SQLite store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.config.durations import GoDuration
from service.config.errors import ConfigError
from service.config.schema import Secret


@dataclass
class EtcdConfig:
    __yaml_type__ = "etcd.Config"

    endpoints: list[str] = field(default_factory=list)
    dial_timeout: GoDuration = GoDuration(10)
    max_retries: int = 10
    tls_enabled: bool = False
    tls_cert_path: str = ""
    tls_key_path: str = ""
    tls_ca_path: str = ""
    tls_server_name: str = ""
    tls_insecure_skip_verify: bool = False
    tls_cipher_suites: str = ""
    tls_min_version: str = ""
    username: str = ""
    password: Secret = Secret("")


@dataclass
class EmbeddedKVConfig:
    """Ours: the single-node store. `path` defaults to `<wal_directory>/kvstore.db`."""

    __yaml_type__ = "embedded.Config"

    path: str = ""


@dataclass
class KVStoreConfig:
    __yaml_type__ = "kv.Config"

    store: str = ""  # "" = etcd when etcd endpoints are set, else embedded (ours)
    prefix: str = "configurations/"
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    embedded: EmbeddedKVConfig = field(default_factory=EmbeddedKVConfig)
    consul: Any = None
    multi: Any = None

    def __post_init__(self) -> None:
        if not self.store:
            self.store = "etcd" if self.etcd.endpoints else "embedded"

    def check(self) -> None:
        if self.store not in ("etcd", "embedded", "inmemory", "consul", "multi"):
            raise ConfigError(f"invalid KV store type {self.store!r}: use etcd or embedded")
        if self.store == "etcd" and not self.etcd.endpoints:
            raise ConfigError("kvstore.store is etcd but kvstore.etcd.endpoints is empty")
