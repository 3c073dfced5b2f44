"""The gRPC push server's small pieces: status labels, retry details, TLS settings it cannot honour."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from service.http.tls import ServerTLSConfig
from service.logs.grpc_server import retry_details, server_credentials, status_label
from service.proto.wire import next_field, read_varint


def test_status_labels_are_dskit_s() -> None:
    assert status_label(grpc.StatusCode.OK) == "success"
    assert status_label(grpc.StatusCode.CANCELLED) == "cancel"
    assert status_label(grpc.StatusCode.INVALID_ARGUMENT) == "InvalidArgument"
    assert status_label(grpc.StatusCode.RESOURCE_EXHAUSTED) == "ResourceExhausted"
    assert status_label(grpc.StatusCode.UNAVAILABLE) == "Unavailable"


def _fields(buf: bytes) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(buf):
        tag, start, stop = next_field(buf, pos)
        out.append((tag >> 3, read_varint(buf, start)[0] if tag & 7 == 0 else buf[start:stop]))
        pos = stop
    return out


def test_retry_details_are_a_google_rpc_status_with_retry_info() -> None:
    status = _fields(retry_details(grpc.StatusCode.UNAVAILABLE, "forwarding is behind", 5))
    assert status[:2] == [(1, 14), (2, b"forwarding is behind")]
    any_ = _fields(status[2][1])  # type: ignore[arg-type]
    assert any_[0] == (1, b"type.googleapis.com/google.rpc.RetryInfo")
    retry_info = _fields(any_[1][1])  # type: ignore[arg-type]
    assert _fields(retry_info[0][1]) == [(1, 5)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("tls", "words"), [
    (ServerTLSConfig(cert_file="c", key_file="k", min_version="TLS13"), "min_version TLS13"),
    (ServerTLSConfig(cert_file="c", key_file="k", client_auth_type="RequireAnyClientCert"), "RequireAnyClientCert"),
])
def test_tls_settings_the_grpc_port_cannot_enforce_are_refused(tls: ServerTLSConfig, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        server_credentials(tls)


def test_unreadable_tls_files_are_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        server_credentials(ServerTLSConfig(cert_file=str(tmp_path / "no.crt"), key_file=str(tmp_path / "no.key")))
