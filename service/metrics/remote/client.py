"""HTTP send of one remote write 1.0 request and the classification of its outcome.

Like Prometheus' ``storage/remote/client.go``: 2xx is success; 5xx, connection errors and timeouts are
recoverable (retry with backoff); 429 is recoverable when ``retry_on_http_429`` is set; any other status is
non-recoverable (drop the batch). ``Retry-After`` (seconds or an HTTP date) is passed on with recoverable
errors so the caller can honour it. The outcome types are shared with the Loki client (``service.http.retry``).
"""

from __future__ import annotations

import aiohttp

from service.http.client import HTTPClient, HTTPClientError
from service.http.retry import NonRecoverableError, RecoverableError, parse_retry_after
from service.metrics.config.remote_write import RemoteWriteConfig

__all__ = ["NonRecoverableError", "RecoverableError", "WriteClient"]

RW_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
_MAX_ERROR_BODY = 512  # bytes of a failed response's body quoted in the error


class WriteClient:
    """Sends snappy-compressed WriteRequests to one endpoint through the shared :class:`HTTPClient` setup."""

    def __init__(self, cfg: RemoteWriteConfig, http: HTTPClient | None = None) -> None:
        self.url = cfg.url
        self.retry_on_429 = cfg.queue_config.retry_on_http_429
        self.http = http or HTTPClient(cfg, timeout=float(cfg.remote_timeout),
                                       headers={**RW_HEADERS, **cfg.headers})
        self._owns_http = http is None

    async def store(self, body: bytes) -> None:
        """POST one compressed request. Raises RecoverableError or NonRecoverableError."""
        try:
            session = await self.http.session()
            headers = await self.http.auth_headers()
            async with session.post(self.url, data=body, headers=headers,
                                    **self.http.request_options()) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return
                text = (await resp.content.read(_MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
                message = f"server returned HTTP status {resp.status} {resp.reason or ''}: {text}".strip()
                if resp.status >= 500 or (resp.status == 429 and self.retry_on_429):
                    raise RecoverableError(message, parse_retry_after(resp.headers.get("Retry-After")), resp.status)
                raise NonRecoverableError(message, resp.status)
        except (TimeoutError, aiohttp.ClientError, OSError, HTTPClientError) as exc:
            raise RecoverableError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._owns_http:
            await self.http.close()
