"""POST /api/chat: validation, the offline mode, and the OpenAI-compatible path against a local server."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.logs.search.chat.service import ChatService
from service.logs.search.config import ChatConfig
from service.logs.search.routes import search_routes
from tests.helpers.log_search_helpers import add_entries, entry, make_store, now_ms, request, serve


def chat_app(store, config: ChatConfig | None = None) -> Starlette:
    chat = ChatService(store, config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await chat.close()

    return Starlette(routes=search_routes(store, chat=chat), lifespan=lifespan)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("chat"))
    now = now_ms()
    entries = []
    for i in range(600):  # nginx: 600 lines in the last 50 minutes, every 10th an error
        line = f"GET /page/{i} 500 upstream error" if i % 10 == 0 else f"GET /page/{i} 200"
        entries.append(entry("nginx", line, now - 3_000_000 + i * 5000))
    for i in range(200):  # nginx errors two hours ago: outside "the last hour"
        entries.append(entry("nginx", f"old error {i}", now - 7_200_000 + i))
    for i in range(100):
        entries.append(entry("api", f"request {i} " + ("timeout talking to db" if i % 4 == 0 else "done"),
                             now - 600_000 + i * 1000))
    for i in range(50):
        entries.append(entry("db", "checkpoint complete" if i else "FATAL: too many connections",
                             now - 300_000 + i * 1000, "stderr"))
    add_entries(store, entries)
    yield store
    store.close()


@pytest.fixture(scope="module")
def offline(store):
    with serve(chat_app(store)) as base:
        yield base


def ask(base: str, question: str, **kw):
    return request(f"{base}/api/chat", method="POST", body={"messages": [{"role": "user", "content": question}]},
                   **kw)


def test_offline_errors_in_source_in_last_hour(offline):
    status, body, _ = ask(offline, "errors in nginx in the last hour")
    assert status == 200, body
    data = body["data"]
    assert data["mode"] == "offline"
    call = data["toolCalls"][-1]
    assert call["name"] == "search_logs"
    assert call["arguments"] == {"source": "nginx", "minutes": 60, "errors_only": True}
    assert call["result"].startswith("60 matching lines")
    assert "Found 60 error lines from nginx in the last 1 hour(s)" in data["answer"]


@pytest.mark.parametrize("amount", ["12345678901234567890", "9" * 5000])
def test_offline_huge_window_is_capped_and_said(offline, amount):
    """A window longer than the tools search is answered for the longest one (366 days), never a 500."""
    status, body, _ = ask(offline, f"errors in nginx in the last {amount} hours")
    assert status == 200, body
    data = body["data"]
    assert data["toolCalls"][-1]["arguments"]["minutes"] == 366 * 24 * 60
    assert "in the last 366 day(s)" in data["answer"]


def test_offline_which_container_logs_the_most(offline):
    data = ask(offline, "which container logs the most?")[1]["data"]
    assert [c["name"] for c in data["toolCalls"]] == ["list_sources"]
    assert data["answer"].startswith("nginx logs the most, with 800 lines.")


def test_offline_search_with_text(offline):
    data = ask(offline, "show logs from api containing timeout")[1]["data"]
    call = data["toolCalls"][-1]
    assert call["name"] == "search_logs" and call["arguments"] == {"source": "api", "query": "timeout"}
    assert "Found 25 lines containing 'timeout' from api." in data["answer"]


def test_offline_health(offline):
    data = ask(offline, "how healthy is db")[1]["data"]
    call = data["toolCalls"][-1]
    assert call["name"] == "source_health" and call["arguments"] == {"source": "db", "minutes": 60}
    assert "1 of 50 lines mention errors" in data["answer"] and "2.00%" in data["answer"]
    assert "FATAL: too many connections" in data["answer"]


def test_offline_unknown_source_and_tenant(offline):
    data = ask(offline, "how healthy is redis")[1]["data"]
    assert "no logs from a source named redis" in data["answer"]
    data = ask(offline, "which container logs the most", headers={"X-Scope-OrgID": "other"})[1]["data"]
    assert data["answer"] == "No logs have been received yet."


@pytest.mark.parametrize("body,fragment", [
    ({}, "messages must be an array"), ({"messages": "hi"}, "messages must be an array"),
    ({"messages": []}, "messages must not be empty"),
    ({"messages": [{"role": "user", "content": "x"}] * 51}, "at most 50"),
    ({"messages": [{"role": "user", "content": "x" * 10_001}]}, "messages[0].content must be at most 10000"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content must be a non-empty"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"content": "x"}]}, "messages[0].role"),
])
def test_chat_validation(offline, body, fragment):
    status, answer, _ = request(f"{offline}/api/chat", method="POST", body=body)
    assert status == 400 and answer["code"] == "INVALID_PARAMETER" and fragment in answer["error"]


class FakeProvider:
    """A small OpenAI-compatible server: asks for one tool call, then answers with what the tool said."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail: tuple[int, dict[str, str]] | None = None

    async def completions(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        if self.fail is not None:
            status, headers = self.fail
            return JSONResponse({"error": {"message": "slow down"}}, status_code=status, headers=headers)
        last = body["messages"][-1]
        if last["role"] == "user":
            call = {"id": "call_1", "type": "function", "function": {
                "name": "search_logs", "arguments": orjson.dumps({"source": "nginx", "errors_only": True,
                                                                  "minutes": 60}).decode()}}
            msg = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            result = orjson.loads(last["content"])
            msg = {"role": "assistant", "content": f"nginx logged {result['total']} errors in the last hour."}
            finish = "stop"
        return JSONResponse({"id": "x", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


@pytest.fixture(scope="module")
def provider():
    fake = FakeProvider()
    with serve(Starlette(routes=[Route("/v1/chat/completions", fake.completions, methods=["POST"])])) as base:
        yield fake, base


def test_openai_tool_call_round_trip(store, provider, monkeypatch):
    fake, base = provider
    fake.fail = None
    fake.requests.clear()
    monkeypatch.setenv("TEST_CHAT_KEY", "sk-test")
    config = ChatConfig(url=f"{base}/v1", model="test-model", api_key_env="TEST_CHAT_KEY")
    with serve(chat_app(store, config)) as app:
        status, body, _ = ask(app, "any errors in nginx lately?")
    assert status == 200, body
    data = body["data"]
    assert data["answer"] == "nginx logged 60 errors in the last hour."
    assert data["mode"] == "openai" and data["iterations"] == 2 and data["usage"]["total_tokens"] == 30
    assert data["toolCalls"] == [{"name": "search_logs", "arguments": {"source": "nginx", "errors_only": True,
                                                                       "minutes": 60},
                                  "result": "60 matching lines, 20 returned"}]
    first = fake.requests[0]
    assert first["auth"] == "Bearer sk-test" and first["body"]["model"] == "test-model"
    assert {t["function"]["name"] for t in first["body"]["tools"]} == {
        "search_logs", "list_sources", "source_detail", "source_health"}
    assert fake.requests[1]["body"]["messages"][-1]["role"] == "tool"


@pytest.mark.parametrize("upstream,status,code", [(429, 429, "RATE_LIMITED"), (500, 502, "UPSTREAM_ERROR"),
                                                  (503, 503, "SERVICE_UNAVAILABLE")])
def test_openai_errors_are_mapped(store, provider, upstream, status, code):
    fake, base = provider
    fake.fail = (upstream, {"Retry-After": "7"} if upstream == 429 else {})
    try:
        with serve(chat_app(store, ChatConfig(url=f"{base}/v1", model="m"))) as app:
            got, body, headers = ask(app, "hello")
    finally:
        fake.fail = None
    assert got == status and body["code"] == code and f"HTTP {upstream}" in body["error"]
    if upstream == 429:
        assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "7"


def test_openai_unreachable_is_503(store):
    from tests.helpers.log_search_helpers import free_port

    config = ChatConfig(url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    with serve(chat_app(store, config)) as app:
        status, body, _ = ask(app, "hello")
    assert status == 503 and body["code"] == "SERVICE_UNAVAILABLE"
