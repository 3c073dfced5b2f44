"""The skip policy (tests/helpers/peers.py): a missing peer fails loudly, naming the installer."""

from __future__ import annotations

import pytest

from tests.helpers.peers import PeerMissing, require


def test_missing_peer_fails_with_how_to_install() -> None:
    with pytest.raises(PeerMissing, match=r"tests/install-deps\.sh .*Debian's some-package"):
        require("/nonexistent/peer-binary", "some-package")
    with pytest.raises(PeerMissing):
        require("no-such-peer-binary-on-path", "some-package")


def test_installed_peers_are_found() -> None:
    for binary, package in (("etcd", "etcd-server"), ("prometheus", "prometheus"), ("promtool", "prometheus"),
                            ("/usr/bin/prometheus-node-exporter", "prometheus-node-exporter"),
                            ("vmagent", "victoria-metrics"), ("wrk", "wrk")):
        assert require(binary, package)
