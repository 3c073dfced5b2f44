"""http_sd_configs: GET the URL every refresh_interval (with the config's auth and TLS) and read groups in
Prometheus' http_sd JSON format. A failed refresh keeps the previous groups."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from service.http.client import HTTPClient
from service.log import RepeatedWarning
from service.metrics.config.discovery import HTTPSDConfig
from service.metrics.discovery.base import Provider, TargetGroup, parse_groups


class HTTPProvider(Provider):
    kind = "http"

    def __init__(self, config: HTTPSDConfig) -> None:
        super().__init__()
        self.config = config
        self.client = HTTPClient(config, timeout=max(float(config.refresh_interval), 1.0))
        self.last_error = ""

    async def fetch(self) -> dict[str, TargetGroup]:
        session = await self.client.session()
        headers = {"X-Prometheus-Refresh-Interval-Seconds": f"{float(self.config.refresh_interval):g}",
                   **await self.client.auth_headers()}
        async with session.get(self.config.url, headers=headers, **self.client.request_options()) as resp:
            if resp.status != 200:
                raise ValueError(f"server returned HTTP status {resp.status} {resp.reason or ''}".rstrip())
            ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
            if ctype != "application/json":
                raise ValueError(f"unsupported content type {ctype!r}")
            data = orjson.loads(await resp.read())
        groups = parse_groups(data, self.config.url, {"__meta_url": self.config.url})
        return {g.source: g for g in groups}

    async def run(self) -> None:
        failing = RepeatedWarning(self.log, "unable to refresh target groups")
        try:
            while True:
                try:
                    self.publish(await self.fetch())
                    self.last_error = ""
                    failing.recovered("target groups refreshed again", url=self.config.url)
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    failing.failed(url=self.config.url, err=self.last_error)
                await asyncio.sleep(float(self.config.refresh_interval))
        finally:
            await self.client.close()
