"""Log lines: fields as a user reads them, `component=` on every line, repeated warnings counted."""

from __future__ import annotations

import io
import logging

from service import log


def _capture() -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log.LogfmtFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return out, handler


def test_values_are_not_python_reprs_and_every_line_has_a_component() -> None:
    out, handler = _capture()
    try:
        log.get_logger("configapi").info("config stored", config="a", created=True, position=None,
                                         jobs=["a", "b"])
        logging.getLogger("uvicorn.error").warning("something from uvicorn")
        logging.getLogger("service.wal").warning("from a stdlib logger", extra={"segment": 3})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert "component=configapi config=a created=true jobs=\"[\\\"a\\\",\\\"b\\\"]\"" in lines[0]
    assert "position" not in lines[0] and "None" not in lines[0] and "True" not in lines[0]
    assert "component=server" in lines[1]
    assert "component=wal segment=3" in lines[2]


def test_repeated_warning_counts_instead_of_repeating() -> None:
    out, handler = _capture()
    now = [1000.0]
    warn = log.RepeatedWarning(log.get_logger("remote_write", url="http://127.0.0.1:9"),
                               "remote down, retrying", clock=lambda: now[0])
    try:
        assert warn.failed(err="connection refused")  # the first one at once
        for _ in range(16):
            now[0] += 3.5
            assert not warn.failed(err="connection refused")
        now[0] += 4.5  # 60.5 s after the first line
        assert warn.failed(err="connection refused")
        assert warn.recovered("remote reachable again")
        assert not warn.recovered("remote reachable again")  # once
        stdlib = log.RepeatedWarning(logging.getLogger("service.metrics.remote.queue"), "remote_write failing")
        stdlib.failed(component="remote_write", url="http://127.0.0.1:9")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert 'msg="remote down, retrying; 1 failure in the last minute"' in lines[0]
    assert "failures=17" in lines[1] and 'msg="remote down, retrying; 17 failures in the last minute"' in lines[1]
    assert "component=remote_write url=http://127.0.0.1:9" in lines[1] and "err=\"connection refused\"" in lines[1]
    assert "level=info" in lines[2] and "failures=18" in lines[2]
    assert "component=remote_write" in lines[3] and "1 failure in the last minute" in lines[3]


def test_a_bad_certificate_path_names_the_file() -> None:
    """The client side (remote_write, scrape, Loki clients): the error that is logged names the file."""
    import pytest

    from service.http.client import HTTPClientError, ssl_context
    from service.metrics.config.http_client import TLSConfig

    with pytest.raises(HTTPClientError, match=r"unable to load the CA /nope/ca\.pem: "):
        ssl_context(TLSConfig(ca_file="/nope/ca.pem"))
    with pytest.raises(HTTPClientError, match=r"unable to load client certificate /nope/c.pem \(key /nope/k.pem\)"):
        ssl_context(TLSConfig(cert_file="/nope/c.pem", key_file="/nope/k.pem"))
