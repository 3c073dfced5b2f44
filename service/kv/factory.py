"""Open the KV store a node config asks for."""

from __future__ import annotations

import os

from service.kv.config import KVStoreConfig
from service.kv.memory import MemoryKV
from service.kv.store import KVStore


def open_store(cfg: KVStoreConfig, wal_directory: str) -> KVStore:
    if cfg.store == "etcd":
        from service.kv.etcd import EtcdKV

        etcd = cfg.etcd
        return EtcdKV(
            list(etcd.endpoints),
            dial_timeout=float(etcd.dial_timeout),
            username=etcd.username,
            password=str(etcd.password),
            ca_file=etcd.tls_ca_path if etcd.tls_enabled else "",
            cert_file=etcd.tls_cert_path if etcd.tls_enabled else "",
            key_file=etcd.tls_key_path if etcd.tls_enabled else "",
        )
    if cfg.store == "embedded":
        from service.kv.embedded import EmbeddedKV

        path = cfg.embedded.path or os.path.join(wal_directory, "kvstore.db")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return EmbeddedKV(path)
    if cfg.store == "inmemory":
        return MemoryKV()
    raise ValueError(f"KV store {cfg.store!r} is not supported; use etcd or embedded")
