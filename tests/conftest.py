"""Shared fixtures: real peers started on loopback with free ports and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster_harness import LEASE_TTL, NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.loki_capture import LokiCapture


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A fresh single-member etcd (starts in ~0.3 s); tests may stop() and start() it again."""
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def cluster_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd for a module's clusters: each NodeCluster keeps its keys apart under a namespace of its own."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def cluster(tmp_path: Path, cluster_etcd: EtcdServer) -> Iterator[NodeCluster]:
    """Node subprocesses on the module's etcd with LEASE_TTL leases, none started yet; all stopped afterwards.
    (Modules whose clusters need other parts define their own `cluster`.)"""
    c = NodeCluster(tmp_path, cluster_etcd.endpoint, lease_ttl=f"{LEASE_TTL:g}s")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def loki() -> Iterator[LokiCapture]:
    """A Loki push capture server on loopback (a stand-in: no real Loki runs here)."""
    with LokiCapture() as cap:
        yield cap
