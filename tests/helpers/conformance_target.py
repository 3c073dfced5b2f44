"""A loopback target for the scrape conformance test, served from its own thread (the test is synchronous).

Pages: /metrics (every text-format type, escapes, duplicates, target-label clashes), /om (OpenMetrics with
exemplars, created, info, stateset, unit), /invalid and /dupnames (malformed: the whole scrape fails),
/echo (the query string as a label: checks `params`), /auth (basic auth), /flap (503 while `down`),
/gone and /stay (file_sd targets), /small.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

METRICS = (
    b"# HELP conf_requests_total Requests.\n# TYPE conf_requests_total counter\n"
    b'conf_requests_total{code="200",method="get"} 10\n'
    b'conf_requests_total{code="500",method="post"} 1 \n'
    b"# A plain comment\n"
    b"# TYPE conf_temp gauge\n"
    b'conf_temp{room="a b",esc="q\\"uote\\\\n\\n"} 21.5\n'
    b"conf_nan NaN\nconf_inf +Inf\nconf_neg_inf -Inf\n"
    b"# TYPE conf_lat histogram\n"
    b'conf_lat_bucket{le="0.1"} 1\nconf_lat_bucket{le="+Inf"} 2\nconf_lat_sum 0.3\nconf_lat_count 2\n'
    b"# TYPE conf_q summary\n"
    b'conf_q{quantile="0.5"} 0.2\nconf_q{quantile="0.99"} 0.9\nconf_q_sum 1\nconf_q_count 3\n'
    b"# TYPE conf_untyped untyped\nconf_untyped{ a = \"spaced\" } 3\n"
    b"conf_dup 1\nconf_dup 2\n"
    b'conf_dup{a="1"} 1\nconf_dup{a="1"} 2\n'
    b'conf_labels{job="exposed_job",instance="exposed_inst",exported_job="x"} 1\n'
    b'conf_empty{a=""} 1\n'
    b"conf_drop_me 1\n"
)

OPENMETRICS = (
    b"# TYPE om_events counter\n# HELP om_events Events.\n"
    b'om_events_total{kind="a"} 5 # {trace_id="abc"} 1.0\n'
    b'om_events_created{kind="a"} 1.7e+09\n'
    b"# TYPE om_temp_celsius gauge\n# UNIT om_temp_celsius celsius\nom_temp_celsius 21.5\n"
    b"# TYPE om_build info\nom_build_info{version=\"1.0\"} 1\n"
    b'# TYPE om_state stateset\nom_state{om_state="a"} 1\nom_state{om_state="b"} 0\n'
    b"# TYPE om_h histogram\n"
    b'om_h_bucket{le="1.0"} 1 # {trace_id="x"} 0.5 1700000000.0\n'
    b'om_h_bucket{le="+Inf"} 2\nom_h_sum 1.5\nom_h_count 2\nom_h_created 1.7e+09\n'
    b"# TYPE om_sum summary\nom_sum{quantile=\"0.5\"} 1\nom_sum_sum 2\nom_sum_count 4\n"
    b"# EOF\n"
)

AUTH = "Basic " + base64.b64encode(b"conf-user:conf-pass").decode()


class ConformanceTarget:
    """Starts an aiohttp server on 127.0.0.1 in a daemon thread; `down` makes /flap answer 503."""

    def __init__(self) -> None:
        self.down = False
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="conformance-target", daemon=True)

    @staticmethod
    def _page(body: bytes, ctype: str = TEXT_TYPE) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": ctype})
        return handler

    async def _echo(self, request: web.Request) -> web.Response:
        query = request.query_string.replace("\\", "\\\\").replace('"', '\\"')
        return web.Response(body=f'echo_params{{query="{query}"}} 1\n'.encode(), headers={"Content-Type": TEXT_TYPE})

    async def _auth(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != AUTH:
            return web.Response(status=401, body=b"unauthorized")
        return web.Response(body=b"auth_ok 1\n", headers={"Content-Type": TEXT_TYPE})

    async def _flap(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, body=b"down")
        return web.Response(body=b'flap_value{k="v"} 1\n', headers={"Content-Type": TEXT_TYPE})

    async def _ts(self, request: web.Request) -> web.Response:
        # an explicit timestamp that always moves forward, so the receiver never sees an old one
        return web.Response(body=b"conf_with_ts 7 %d\n" % int(time.time() * 1000), headers={"Content-Type": TEXT_TYPE})

    async def _start(self) -> int:
        app = web.Application()
        routes = {
            "/metrics": self._page(METRICS), "/om": self._page(OPENMETRICS, OM_TYPE),
            "/invalid": self._page(b"inv_ok 1\nthis is not valid\n"),
            "/dupnames": self._page(b'dupn_ok 1\ndupn{a="1",a="2"} 1\n'),
            "/echo": self._echo, "/auth": self._auth, "/flap": self._flap, "/ts": self._ts,
            "/gone": self._page(b"gone_value 1\n"), "/stay": self._page(b"stay_value 1\n"),
            "/small": self._page(b'small_value{a="1"} 1\n'),
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def start(self) -> ConformanceTarget:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
