"""The web UI in a real browser (Debian's Chromium driven by Playwright) against 2 real nodes on a real etcd.

Each test asserts on what the page shows, compared with what the APIs answer, never on pixels. Every page is
also saved as a screenshot (light and dark, desktop and phone) to `$UI_SCREENSHOT_DIR` (default
`test-artifacts/ui/` in the repository), and checked with axe-core for serious accessibility violations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import deploy_tools
from tests.helpers.cluster_harness import NodeCluster
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.node_process import NodeProcess, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR") or Path(__file__).resolve().parents[1] / "test-artifacts" / "ui")
LOGS = """logs:
  positions_directory: positions
  configs:
    - name: default
      search: {retention: 3650d, retention_interval: 1s}
"""
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
PAGES = ["cluster", "configs", "targets", "pipelines", "logs"]




@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    root = tmp_path_factory.mktemp("ui")
    etcd = EtcdServer(root / "etcd")
    etcd.start()
    c = NodeCluster(root, etcd.endpoint)
    try:
        c.add(2, extra=LOGS)
        yield c
    finally:
        c.close()
        etcd.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert os.access(CHROMIUM, os.X_OK), "chromium is installed by tests/install-deps.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def url(node: NodeProcess, fragment: str) -> str:
    return f"http://127.0.0.1:{node.port}/ui/#/{fragment}"


def shot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def axe_violations(pg: Any) -> list[dict[str, Any]]:
    pg.add_script_tag(path=str(deploy_tools.axe_core()))
    result = pg.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:3]]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def push(node: NodeProcess, lines: list[str], container: str = "api", stream: str = "stderr") -> None:
    now = time.time_ns()
    body = {"streams": [{"stream": {"container": container, "stream": stream},
                         "values": [[str(now + i), line] for i, line in enumerate(lines)]}]}
    resp = node.request("POST", "/loki/api/v1/push", json.dumps(body), {"Content-Type": "application/json"})
    assert resp.status == 204, resp.text


def put(node: NodeProcess, name: str, targets: list[str]) -> None:
    body = f"scrape_configs:\n  - job_name: {name}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n" \
           f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    resp = node.request("PUT", f"/agent/api/v1/config/{name}", body)
    assert resp.status in (200, 201), resp.text


def test_root_and_ui_are_served_with_every_asset_from_the_node(cluster: NodeCluster, page: Any) -> None:
    node = cluster.nodes["n0"]
    resp = node.request("GET", "/")
    assert resp.status == 302 and resp.headers["location"] == "/ui/"
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url(node, "cluster"))
    page.wait_for_selector("text=Members")
    assert requested and all(u.startswith(f"http://127.0.0.1:{node.port}/") for u in requested), requested


def test_configs_page_saves_shows_errors_in_place_diffs_and_deletes(cluster: NodeCluster, page: Any) -> None:
    node = cluster.nodes["n0"]
    page.goto(url(node, "configs"))
    page.click("#new-config")
    page.fill("#config-name", "ui-made")
    page.fill("#config-yaml", "scrape_configs:\n  - job_name: ui-made\n    static_configs:\n"
                              "      - targets: ['127.0.0.1:9']\n")
    page.click("#save-config")
    page.wait_for_selector("#config-list >> text=ui-made")
    assert node.get("/agent/api/v1/configs/ui-made").status == 200
    # An invalid edit: the API's own validation message appears next to the editor; nothing changes.
    page.goto(url(node, "configs/ui-made"))
    page.wait_for_function("document.querySelector('#config-yaml').value.includes('ui-made')")
    before = node.get("/agent/api/v1/configs/ui-made").json()["data"]["value"]
    page.fill("#config-yaml", "scrape_configs:\n  - job_name: ui-made\n    scrape_interval: 10s\n"
                              "    scrape_timeout: 20s\n    static_configs: [{targets: ['127.0.0.1:9']}]\n")
    page.click("#diff-config")
    diff = page.inner_text("#config-diff")
    assert "+     scrape_timeout: 20s" in diff and "-" in diff
    page.click("#save-config")
    error = page.wait_for_selector("#config-error").inner_text()
    assert "failed to validate config" in error and "scrape timeout" in error.lower()
    shot(page, "configs-error")
    assert node.get("/agent/api/v1/configs/ui-made").json()["data"]["value"] == before
    page.fill("#config-yaml", "scrape_configs:\n  - job_name: ui-made\n    bogus_field: 1\n")
    page.click("#save-config")
    page.wait_for_selector("#config-error >> text=could not unmarshal config")
    # Delete asks first.
    page.click("#delete-config")
    page.click("#confirm-delete")
    page.wait_for_selector("text=Deleted ui-made.")
    assert node.get("/agent/api/v1/configs/ui-made").status == 404


def test_targets_page_shows_every_nodes_targets_and_a_down_targets_error(cluster: NodeCluster, page: Any) -> None:
    n0 = cluster.nodes["n0"]
    names = [f"tg{i}" for i in range(6)]
    for name in names:
        put(n0, name, [f"127.0.0.1:{n0.port}", "127.0.0.1:1"])
    api_nodes: set[str] = set()

    def all_scraped() -> bool:
        data = n0.get("/ui/api/targets").json()["data"]
        targets = [t for t in data["targets"] if t["instance"] in names]
        api_nodes.update(t["node"] for t in targets)
        return len(targets) == 12 and all(t["state"] != "unknown" for t in targets)

    wait_for(all_scraped, timeout=30, what="every target scraped once")
    assert api_nodes == {"n0", "n1"}  # the page covers both nodes
    page.goto(url(n0, "targets"))
    page.fill("#target-filter", "127.0.0.1:1/")
    page.wait_for_selector("tr.target[data-state='down']")
    rows = page.query_selector_all("tr.target")
    assert len(rows) == 6
    errors = [r.query_selector(".scrape-error").inner_text() for r in rows]
    assert all("127.0.0.1:1" in e or "connect" in e.lower() for e in errors), errors
    page.click("tr.target >> nth=0 >> button")
    page.wait_for_selector("text=Discovered labels")
    assert "__address__" in page.inner_text("#targets-body")
    shot(page, "targets")
    for name in names:
        n0.request("DELETE", f"/agent/api/v1/config/{name}")


def test_logs_page_counts_equal_the_api_and_the_tail_follows(cluster: NodeCluster, page: Any) -> None:
    n0, n1 = cluster.nodes["n0"], cluster.nodes["n1"]
    push(n0, [f"checkout failed order {i}" for i in range(37)], container="shop")
    push(n1, [f"checkout ok order {i}" for i in range(25)], container="shop", stream="stdout")
    wait_for(lambda: n0.get("/api/logs/search?query=checkout&limit=1").json()["data"]["total"] == 62, timeout=30,
             what="both nodes indexed their lines")
    page.goto(url(n0, "logs"))
    page.fill("#log-query", "checkout")
    page.click("#log-search")
    page.wait_for_selector("#log-total >> text=62 matching lines")
    marks = page.query_selector_all("#log-results mark")
    assert marks and all(m.inner_text().lower() == "checkout" for m in marks)
    window = page.evaluate("[document.querySelector('#histogram').dataset.from, "
                           "document.querySelector('#histogram').dataset.to]")
    bars = page.evaluate("[...document.querySelectorAll('#histogram rect.bar')].map(r => +r.dataset.count)")
    api = n0.get(f"/api/logs/histogram?query=checkout&fromTimestamp={window[0]}&toTimestamp={window[1]}").json()
    assert sum(bars) == api["data"]["total"] == 62
    assert bars == [b["count"] for b in api["data"]["buckets"]]
    # Filter by stream through the form: only n0's stderr lines remain.
    page.select_option("#log-stream", "stderr")
    page.click("#log-search")
    page.wait_for_selector("#log-total >> text=37 matching lines")
    shot(page, "logs")
    # Live tail: a line pushed after following starts appears without reloading.
    page.select_option("#log-stream", "")
    page.fill("#log-query", "")
    page.click("#log-search")
    page.click("#live-tail")
    push(n1, ["tail-me now"], container="shop")
    page.wait_for_selector("#tail >> text=tail-me now", timeout=20_000)
    page.click("#live-tail")
    # The chat answers from the same logs (offline mode).
    page.fill("#chat-input", "list sources")
    page.click("#chat-ask")
    page.wait_for_selector("#chat-answer .chat-answer")
    assert "shop" in page.inner_text("#chat-answer")


def test_cluster_page_shows_ownership_move_when_a_node_stops(tmp_path: Path, browser: Any) -> None:
    """Its own pair of nodes: this test stops one."""
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    c = NodeCluster(tmp_path, etcd.endpoint)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        c.add(2, extra=LOGS)
        n0 = c.nodes["n0"]
        names = [f"own{i}" for i in range(8)]
        for name in names:
            put(n0, name, ["127.0.0.1:9"])
        c.wait_exactly_once(names, timeout=30)
        pg = context.new_page()
        pg.goto(url(n0, "cluster"))
        pg.wait_for_selector("#ownership")
        owners = {r.get_attribute("data-config"): r.query_selector(".owner").inner_text()
                  for r in pg.query_selector_all("#ownership tr[data-config]")}
        assert set(owners) == set(names) and set(owners.values()) == {"n0", "n1"}
        shot(pg, "cluster")
        c.remove("n1", signal.SIGTERM)

        def all_on_n0() -> bool:
            rows = pg.query_selector_all("#ownership tr[data-config]")
            cells = [r.query_selector(".owner").inner_text() for r in rows]
            return len(cells) == len(names) and set(cells) == {"n0"}

        wait_for(all_on_n0, timeout=30, what="the page shows every config on n0")
        assert pg.query_selector_all("tr[data-node]") and "n1" not in [
            r.get_attribute("data-node") for r in pg.query_selector_all("tr[data-node]")]
        history = n0.get("/agent/api/v1/cluster/ring").json()["data"]["reshards"]
        assert any(set(r["started_names"]) & set(names) for r in history)
        pg.wait_for_selector(".timeline li")
        shot(pg, "cluster-after-leave")
    finally:
        context.close()
        c.close()
        etcd.stop()


def test_every_page_is_accessible_and_readable_in_both_themes_and_on_a_phone(cluster: NodeCluster,
                                                                              browser: Any) -> None:
    n0 = cluster.nodes["n0"]
    put(n0, "a11y", [f"127.0.0.1:{n0.port}"])
    push(n0, ["accessibility check line"], container="a11y")
    problems: dict[str, Any] = {}
    for scheme in ("light", "dark"):
        for label, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844})):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            pg = context.new_page()
            for name in PAGES:
                pg.goto(url(n0, name))
                pg.wait_for_selector("main h1")
                pg.wait_for_function("!document.querySelector('main').innerText.includes('Loading')", timeout=15_000)
                found = axe_violations(pg)
                if found:
                    problems[f"{name}/{scheme}/{label}"] = found
                # The page fits the viewport's width (no sideways scrolling of the whole page).
                width = pg.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"] + 1, f"{name} is {width}px wide on a {label}"
                shot(pg, f"{name}-{scheme}-{label}")
            context.close()
    n0.request("DELETE", "/agent/api/v1/config/a11y")
    assert not problems, json.dumps(problems, indent=1)


def test_pipelines_page_shows_wal_and_queues_of_both_nodes(cluster: NodeCluster, page: Any) -> None:
    n0 = cluster.nodes["n0"]
    body = "scrape_configs:\n  - job_name: pipe\n    scrape_interval: 1s\n    scrape_timeout: 1s\n" \
           f"    static_configs: [{{targets: ['127.0.0.1:{n0.port}']}}]\n" \
           "remote_write:\n  - name: dead-end\n    url: http://127.0.0.1:1/api/v1/write\n"
    assert n0.request("PUT", "/agent/api/v1/config/pipe", body).status in (200, 201)
    wait_for(lambda: any(m["instance"] == "pipe" and m["remotes"] for n in n0.get("/ui/api/pipelines").json()
                         ["data"]["nodes"] for m in n["metrics"]), timeout=30, what="the pipe instance reported")
    page.goto(url(n0, "pipelines"))
    section = page.wait_for_selector("section[aria-label^='pipe on']")
    text = section.inner_text()
    assert "dead-end" in text and "http://127.0.0.1:1/api/v1/write" in text
    assert page.query_selector_all("text=Search stores")
    n0.request("DELETE", "/agent/api/v1/config/pipe")
