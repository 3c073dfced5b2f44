"""POST /api/chat: validate the conversation, then answer through the provider or the offline mode.

Body `{"messages": [{"role": "user"|"assistant", "content": "..."}]}`: an array of at most 50 messages, each
with a known role and non-empty string content of at most 10 000 characters, the last one from the user.
Answer `data: {answer, toolCalls: [{name, arguments, result}], iterations, mode, model?, usage?}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.http.errors import HTTPError
from service.logs.search.chat import offline
from service.logs.search.chat.provider import Provider
from service.logs.search.chat.tools import Tools
from service.logs.search.cluster import ClusterSearch, SearchBackend
from service.logs.search.config import ChatConfig
from service.logs.search.envelope import invalid, tenant_of
from service.logs.search.scope import answer, scope_of
from service.logs.search.store import LogStore

MAX_MESSAGES = 50
MAX_CONTENT = 10_000
MAX_BODY = 1 << 20
ROLES = ("user", "assistant")


def validate(body: bytes) -> list[dict[str, str]]:
    if len(body) > MAX_BODY:
        raise invalid("messages: request body too large")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("messages: body must be JSON") from None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        raise invalid("messages must be an array")
    if not messages:
        raise invalid("messages must not be empty")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"messages must hold at most {MAX_MESSAGES} messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise invalid(f"messages[{i}] must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise invalid(f"messages[{i}].role must be user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise invalid(f"messages[{i}].content must be a non-empty string")
        if len(content) > MAX_CONTENT:
            raise invalid(f"messages[{i}].content must be at most {MAX_CONTENT} characters")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise invalid("messages: the last message must be from the user")
    return out


class ChatService:
    """`cluster`, when given, grounds the tools in the logs of every ACTIVE node (unless `scope=local`)."""

    def __init__(self, store: LogStore | Callable[[], LogStore | None], config: ChatConfig | None = None,
                 cluster: ClusterSearch | None = None) -> None:
        self._store = store
        self.config = config or ChatConfig()
        self.provider = Provider(self.config) if self.config.url else None
        self.cluster = cluster

    async def close(self) -> None:
        if self.provider is not None:
            await self.provider.close()

    def _current(self) -> LogStore:
        store = self._store() if callable(self._store) and not isinstance(self._store, LogStore) else self._store
        if store is None or not store.running:
            raise HTTPError(503, "log store is not running")
        return store

    async def ask(self, messages: list[dict[str, str]], tenant: str,
                  backend: SearchBackend | None = None) -> dict[str, Any]:
        tools = Tools(backend if backend is not None else self._current(), tenant)
        if self.provider is not None:
            return await self.provider.answer(messages, tools)
        text, calls = await offline.answer(messages[-1]["content"], tools)
        return {"answer": text, "toolCalls": calls, "iterations": 1, "mode": "offline"}

    async def handle(self, request: Request) -> Response:
        messages = validate(await request.body())
        tenant = tenant_of(request)
        local = self._current()
        view = (self.cluster.view(local, scope_of(request), request.headers)
                if self.cluster is not None else None)
        return answer(await self.ask(messages, tenant, view), view)
