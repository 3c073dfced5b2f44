"""The log search API (docs/http-api.md) served by a real uvicorn server over a real store."""

from __future__ import annotations

import urllib.parse

import pytest

from service.logs.search.store import source_id
from tests.helpers.log_search_helpers import add_entries, entry, make_store, now_ms, request, search_app, serve

T0 = now_ms() - 10 * 60_000  # ten minutes ago, inside every default window


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("api"))
    entries = []
    for i in range(300):
        name = ("nginx", "api", "db")[i % 3]
        stream = "stderr" if i % 5 == 0 else "stdout"
        line = f"request {i} " + ("timeout upstream" if i % 10 == 0 else "served ok")
        entries.append(entry(name, line, T0 + i * 1000, stream))
    specials = ['say "hello" there', "it's quoted", "glob * star", "cats OR dogs", "NEAR(a b)",
                "x; DROP TABLE logs; --", "key:value pair", "Ünïcode Straße ERROR"]
    entries += [entry("special", line, T0 + 400_000 + i) for i, line in enumerate(specials)]
    add_entries(store, entries)
    add_entries(store, [entry("secret-app", "tenant b only timeout", T0 + 1)], tenant="team-b")
    with serve(search_app(store, status_provider=lambda: {"kv": {"healthy": True}})) as base:
        yield base
    store.close()


def get(base: str, path: str, headers: dict | None = None, **params):
    return request(f"{base}{path}?{urllib.parse.urlencode(params)}", headers=headers)


def test_status_and_version(api):
    status, body, _ = get(api, "/api/status")
    assert status == 200 and body["success"] is True
    assert body["data"]["status"] == "healthy" and body["data"]["store"]["running"] is True
    assert body["data"]["kv"] == {"healthy": True}
    status, body, _ = get(api, "/api/version")
    assert status == 200 and body["data"]["name"] == "scraping-service" and body["data"]["version"]


def test_search_all_newest_first_and_total(api):
    status, body, _ = get(api, "/api/logs/search")
    assert status == 200
    data = body["data"]
    assert data["total"] == 308 and data["returned"] == 50 and len(data["logs"]) == 50
    stamps = [e["timestamp"] for e in data["logs"]]
    assert stamps == sorted(stamps, reverse=True)
    first = data["logs"][0]
    assert set(first) >= {"id", "timestamp", "container", "stream", "labels", "message"}
    assert first["container"] == "special" and first["labels"]["container"] == "special"


def test_search_filters(api):
    data = get(api, "/api/logs/search", query="timeout")[1]["data"]
    assert data["total"] == 30 and all("timeout" in e["message"] for e in data["logs"])
    data = get(api, "/api/logs/search", query="TIMEO")[1]["data"]  # case-insensitive, last word as prefix
    assert data["total"] == 30
    data = get(api, "/api/logs/search", query="timeout", container="nginx")[1]["data"]
    assert data["total"] == 10 and {e["container"] for e in data["logs"]} == {"nginx"}
    data = get(api, "/api/logs/search", containerId=source_id("api"), limit=100)[1]["data"]
    assert data["total"] == 100 and {e["container"] for e in data["logs"]} == {"api"}
    data = get(api, "/api/logs/search", containerId="000000000000")[1]["data"]
    assert data["total"] == 0
    data = get(api, "/api/logs/search", stream="stderr", limit=100)[1]["data"]
    assert data["total"] == 60 and {e["stream"] for e in data["logs"]} == {"stderr"}
    data = get(api, "/api/logs/search", fromTimestamp=T0 + 10_000, toTimestamp=T0 + 19_000)[1]["data"]
    assert data["total"] == 10 and all(T0 + 10_000 <= e["timestamp"] <= T0 + 19_000 for e in data["logs"])
    data = get(api, "/api/logs/search", query="UNICODE straße error")[1]["data"]  # accents and case folded
    assert data["total"] == 1


def test_pagination_covers_everything_once(api):
    seen = []
    for offset in range(0, 320, 100):
        data = get(api, "/api/logs/search", limit=100, offset=offset)[1]["data"]
        assert data["total"] == 308
        seen += [e["id"] for e in data["logs"]]
    assert len(seen) == 308 and len(set(seen)) == 308


@pytest.mark.parametrize("text,expected", [
    ('"', ['say "hello" there']), ("'", ["it's quoted"]), ("*", ["glob * star"]), ("OR", ["cats OR dogs"]),
    ("NEAR(", ["NEAR(a b)"]), ("; DROP TABLE", ["x; DROP TABLE logs; --"]), ("key:value", ["key:value pair"]),
    (":", ["key:value pair"]), ('"hello', ['say "hello" there']),
])
def test_query_syntax_is_searched_as_text(api, text, expected):
    status, body, _ = get(api, "/api/logs/search", query=text, container="special")
    assert status == 200, body
    assert [e["message"] for e in body["data"]["logs"]] == expected
    assert get(api, "/api/logs/search")[1]["data"]["total"] == 308  # the table is still there


@pytest.mark.parametrize("params,name", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset"),
    ({"offset": "1.5"}, "offset"), ({"fromTimestamp": "yesterday"}, "fromTimestamp"),
    ({"toTimestamp": "-5"}, "toTimestamp"), ({"fromTimestamp": "10", "toTimestamp": "5"}, "fromTimestamp"),
    ({"stream": "stdin"}, "stream"), ({"query": "x" * 1001}, "query"),
    ({"offset": str(2**63)}, "offset"), ({"offset": "9" * 30}, "offset"),
])
def test_bad_search_parameters(api, params, name):
    status, body, _ = get(api, "/api/logs/search", **params)
    assert status == 400 and body["success"] is False and body["code"] == "INVALID_PARAMETER"
    assert body["error"].startswith(name)


@pytest.mark.parametrize("params,name", [
    ({"minutes": "0"}, "minutes"), ({"minutes": "abc"}, "minutes"), ({"bucket": "0"}, "bucket"),
    ({"bucket": "1", "minutes": "600"}, "bucket"), ({"minutes": "5", "fromTimestamp": "1"}, "minutes"),
    ({"stream": "x"}, "stream"), ({"bucket": str(2**63)}, "bucket"), ({"bucket": "9" * 30}, "bucket"),
    # 10 000 buckets of 1 s, but the unaligned window touches 10 001 of them
    ({"bucket": "1000", "fromTimestamp": "500", "toTimestamp": str(10_000_000 + 499)}, "bucket"),
])
def test_bad_histogram_parameters(api, params, name):
    status, body, _ = get(api, "/api/logs/histogram", **params)
    assert status == 400 and body["code"] == "INVALID_PARAMETER" and body["error"].startswith(name)


def test_histogram(api):
    data = get(api, "/api/logs/histogram", fromTimestamp=T0, toTimestamp=T0 + 299_999, bucket=60_000)[1]["data"]
    assert data["total"] == 300 and sum(b["count"] for b in data["buckets"]) == 300
    assert all(b["timestamp"] % 60_000 == 0 for b in data["buckets"])
    stamps = [b["timestamp"] for b in data["buckets"]]
    assert stamps == sorted(stamps)
    data = get(api, "/api/logs/histogram", minutes=60, container="db")[1]["data"]
    assert data["total"] == 100 and data["bucket"] == 30_000
    data = get(api, "/api/logs/histogram", minutes=60, query="timeout", stream="stderr")[1]["data"]
    assert data["total"] == 30  # every 10th line is a timeout and every 10th is also on stderr


def test_histogram_bucket_cap_holds_for_any_window(api):
    """An all-time window gets a bucket chosen to fit (whole days), never 418 986 buckets."""
    data = get(api, "/api/logs/histogram", fromTimestamp=0, toTimestamp=253402300799999)[1]["data"]
    assert len(data["buckets"]) <= 10_000 and data["bucket"] % 86_400_000 == 0
    assert data["total"] == 308 and sum(b["count"] for b in data["buckets"]) == 308
    data = get(api, "/api/logs/histogram", fromTimestamp=0, toTimestamp=9_999_999, bucket=1000)[1]["data"]
    assert len(data["buckets"]) == 10_000  # exactly the cap, aligned: allowed
    status, body, _ = get(api, "/api/logs/histogram", fromTimestamp=0, toTimestamp=2**62)
    assert status == 400 and body["error"].startswith("toTimestamp")


def test_containers(api):
    data = get(api, "/api/logs/containers")[1]["data"]
    counts = {c["name"]: c["count"] for c in data}
    assert counts == {"nginx": 100, "api": 100, "db": 100, "special": 8}
    assert all(c["lastSeen"] >= T0 for c in data)
    listed = get(api, "/api/containers")[1]["data"]
    assert {c["id"] for c in listed} == {source_id(n) for n in counts}
    status, body, _ = get(api, f"/api/containers/{source_id('nginx')}")
    assert status == 200 and body["data"]["name"] == "nginx" and body["data"]["count"] == 100
    assert sorted(body["data"]["streams"]) == ["stderr", "stdout"]
    assert get(api, "/api/containers/nginx")[1]["data"]["id"] == source_id("nginx")
    status, body, _ = get(api, "/api/containers/nope")
    assert status == 404 and body["code"] == "NOT_FOUND"


def test_tenant_isolation(api):
    b = {"X-Scope-OrgID": "team-b"}
    data = get(api, "/api/logs/search", headers=b, query="timeout")[1]["data"]
    assert data["total"] == 1 and data["logs"][0]["container"] == "secret-app"
    assert get(api, "/api/logs/search", query="tenant")[1]["data"]["total"] == 0
    assert [c["name"] for c in get(api, "/api/logs/containers", headers=b)[1]["data"]] == ["secret-app"]
    assert get(api, f"/api/containers/{source_id('secret-app')}")[0] == 404
    assert get(api, "/api/logs/histogram", headers=b, minutes=60)[1]["data"]["total"] == 1
    assert get(api, "/api/logs/search", headers={"X-Scope-OrgID": "other"})[1]["data"]["total"] == 0


def test_store_not_running_is_503(tmp_path):
    with serve(search_app(None)) as base:
        status, body, _ = get(base, "/api/logs/search")
        assert status == 503 and body["code"] == "SERVICE_UNAVAILABLE"
        assert get(base, "/api/status")[1]["data"]["status"] == "degraded"
