"""Scrape loops against real loopback targets: formats, failures, limits, staleness, targets()."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from service.metrics.scrape.manager import ScrapeManager
from tests.helpers.polling import wait_until
from tests.helpers.scrape_targets import TargetServer, decode_bodies, is_stale, scrape_config


def config(port: int, job: str, path: str, extra: str = "") -> str:
    return (f"job_name: {job}\nscrape_interval: 200ms\nscrape_timeout: 150ms\nmetrics_path: {path}\n"
            f"static_configs:\n  - targets: ['127.0.0.1:{port}']\n    labels: {{env: test}}\n{extra}")


def run(scenario: Callable[[TargetServer, list[bytes]], Awaitable[None]]) -> None:
    async def main() -> None:
        server = TargetServer()
        await server.start()
        try:
            await scenario(server, [])
        finally:
            await server.stop()
    asyncio.run(main())


def collector(bodies: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
    async def append(body: bytes) -> None:
        bodies.append(body)
    return append


def ups(samples: list, job: str) -> list[float]:
    return [v for labels, v, _ in samples if labels["__name__"] == "up" and labels["job"] == job]


def test_formats_and_broken_targets() -> None:
    jobs = {"text": "/text", "gzip": "/gzip", "om": "/om", "slow": "/slow", "huge": "/huge",
            "garbage": "/garbage", "badutf8": "/badutf8", "invalid": "/invalid", "limit": "/many",
            "sizelimit": "/huge"}
    extras = {"limit": "sample_limit: 10\n", "sizelimit": "body_size_limit: 1KB\n", "huge": "scrape_timeout: 190ms\n"}

    async def scenario(server: TargetServer, bodies: list[bytes]) -> None:
        scs = [scrape_config(config(server.port, job, path, extras.get(job, "").replace("scrape_timeout: 190ms\n", "")))
               for job, path in jobs.items()]
        mgr = ScrapeManager("inst", scs, collector(bodies))
        await mgr.start()
        try:
            # A loaded machine may time any scrape out (150 ms): wait for a moment when every target's last
            # scrape shows what that target is about (up, or its own error).
            def settled() -> bool:
                ts = {t["target_group"]: t for t in mgr.targets()}
                return (len(ts) == len(jobs) and all(t["last_scrape"] != "0001-01-01T00:00:00Z" for t in ts.values())
                        and all(ts[j]["state"] == "up" for j in ("text", "gzip", "om"))
                        and "sample limit exceeded" in ts["limit"]["scrape_error"]
                        and "body size limit exceeded" in ts["sizelimit"]["scrape_error"])
            await wait_until(settled, timeout=60, what="every target scraped, each showing its state")
            targets = {t["target_group"]: t for t in mgr.targets()}
        finally:
            await mgr.stop(write_stale=True)
        samples = decode_bodies(bodies)
        for job in ("text", "gzip", "om"):
            assert targets[job]["state"] == "up", targets[job]
            assert 1.0 in ups(samples, job)  # (an early scrape of a loaded machine may time out)
        for job in ("slow", "garbage", "badutf8", "invalid", "limit", "sizelimit"):
            assert targets[job]["state"] == "down", (job, targets[job])
            assert targets[job]["scrape_error"]
            assert {v for v in ups(samples, job) if not is_stale(v)} == {0.0}
        assert targets["slow"]["scrape_error"] == "context deadline exceeded"
        assert "sample limit exceeded" in targets["limit"]["scrape_error"]
        assert "body size limit exceeded" in targets["sizelimit"]["scrape_error"]
        # failed scrapes append no page samples, only the report series
        assert not [s for s in samples if s[0]["job"] == "invalid" and s[0]["__name__"] == "ok"]
        text = [(labels, v, ts) for labels, v, ts in samples if labels["job"] == "text" and not is_stale(v)]
        names = {labels["__name__"] for labels, _, _ in text}
        assert {"requests_total", "temp", "temp_inf", "lat_bucket", "lat_sum", "lat_count", "q", "dup",
                "up", "scrape_duration_seconds", "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling", "scrape_series_added"} <= names
        first = [s for s in text if s[2] == text[0][2]]
        assert [v for labels, v, _ in first if labels["__name__"] == "dup"] == [1.0]  # duplicate: first wins
        assert math.isnan(next(v for labels, v, _ in first if labels["__name__"] == "temp"))
        assert next(v for labels, v, _ in first if labels["__name__"] == "temp_inf") == math.inf
        assert next(v for labels, v, _ in first if labels["__name__"] == "scrape_samples_scraped") == 13.0
        req = next(labels for labels, _, _ in first if labels["__name__"] == "requests_total")
        assert req == {"__name__": "requests_total", "code": "200", "method": "get", "env": "test",
                       "instance": f"127.0.0.1:{server.port}", "job": "text"}
        om = [(labels, v, ts) for labels, v, ts in samples if labels["job"] == "om" and not is_stale(v)]
        assert ("om_g", 2.5, 1700000000123) in {(labels["__name__"], v, ts) for labels, v, ts in om}
        assert "om_events_created" in {labels["__name__"] for labels, _, _ in om}
        # write_stale: every text series got a stale marker at the end
        stale_names = {labels["__name__"] for labels, v, _ in samples if labels["job"] == "text" and is_stale(v)}
        assert {"requests_total", "up", "lat_bucket"} <= stale_names
        assert "om_g" not in {labels["__name__"] for labels, v, _ in samples if labels["job"] == "om"
                              and is_stale(v)}  # explicit timestamps get no stale markers
    run(scenario)


def test_down_and_back_and_disappearing_series() -> None:
    async def scenario(server: TargetServer, bodies: list[bytes]) -> None:
        sc = scrape_config(config(server.port, "dyn", "/dyn", "metric_relabel_configs:\n"
                                  "  - source_labels: [__name__]\n    regex: dyn_b\n    target_label: tag\n"
                                  "    replacement: relabeled\n"))
        mgr = ScrapeManager("inst", [sc], collector(bodies))
        await mgr.start()

        def up_values() -> list[float]:
            return ups(decode_bodies(bodies), "dyn")
        try:
            await wait_until(lambda: len(up_values()) >= 1)
            server.state["series"] = [b"dyn_a 1"]
            n = len(bodies)
            await wait_until(lambda: len(bodies) >= n + 2)
            server.state["down"] = True
            await wait_until(lambda: up_values()[-1] == 0.0)
            assert mgr.targets()[0]["state"] == "down"
            assert "503" in mgr.targets()[0]["scrape_error"]
            server.state["down"] = False
            await wait_until(lambda: up_values()[-1] == 1.0)
        finally:
            await mgr.stop(write_stale=False)
        samples = decode_bodies(bodies)
        vals = up_values()
        assert vals[0] == 1.0 and 0.0 in vals and vals[-1] == 1.0
        b_stale = [labels for labels, v, _ in samples if labels["__name__"] == "dyn_b" and is_stale(v)]
        assert b_stale and b_stale[0]["tag"] == "relabeled"
        a_stale = [labels for labels, v, _ in samples if labels["__name__"] == "dyn_a" and is_stale(v)]
        assert a_stale, "the failed scrape marks the previous series stale"
        assert not [1 for labels, v, _ in samples if labels["__name__"] == "up" and is_stale(v)]
    run(scenario)


def test_apply_removes_and_adds_jobs_with_stale_markers() -> None:
    async def scenario(server: TargetServer, bodies: list[bytes]) -> None:
        a = scrape_config(config(server.port, "a", "/text"))
        b = scrape_config(config(server.port, "b", "/many", "target_limit: 1\n"))
        mgr = ScrapeManager("inst", [a], collector(bodies))
        await mgr.start()
        try:
            await wait_until(lambda: mgr.targets() and mgr.targets()[0]["state"] == "up")
            await mgr.apply([b])
            await wait_until(lambda: [t["target_group"] for t in mgr.targets()] == ["b"])
            stale_a = {labels["__name__"] for labels, v, _ in decode_bodies(bodies)
                       if labels["job"] == "a" and is_stale(v)}
            assert "requests_total" in stale_a and "up" in stale_a
            await wait_until(lambda: mgr.targets()[0]["state"] == "up")
            b2 = scrape_config(config(server.port, "b", "/many", "target_limit: 1\nsample_limit: 5\n"))
            await mgr.apply([b2])
            await wait_until(lambda: mgr.targets()[0]["state"] == "down")
            assert "sample limit" in mgr.targets()[0]["scrape_error"]
        finally:
            await mgr.stop(write_stale=False)
    run(scenario)
