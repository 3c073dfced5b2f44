"""Requests for the fuzz tests: a reset or a 5xx is a failure in itself, whatever the test asserts next."""

from __future__ import annotations

from tests.helpers.node_process import NodeProcess, Response


def send(node: NodeProcess, method: str, path: str, body: bytes | str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 15.0) -> Response:
    """One request; fails on a reset, a timeout or any 5xx (503 with Retry-After is the only 5xx allowed)."""
    try:
        resp = node.request(method, path, body, headers, timeout=timeout)
    except (ConnectionError, TimeoutError) as exc:
        raise AssertionError(f"{method} {path}: {type(exc).__name__} instead of an answer") from None
    if resp.status >= 500:
        allowed = resp.status == 503 and "retry-after" in resp.headers
        assert allowed, f"{method} {path} answered {resp.status}: {resp.text[:500]}"
    return resp
