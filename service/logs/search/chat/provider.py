"""An OpenAI-compatible chat completions endpoint with tool calling (OpenAI, OpenRouter, vLLM, Ollama...).

Loop (at most MAX_ITERATIONS requests): send the conversation and the tool schemas; while the model asks for
tools, run them and send their JSON results back. Upstream failures become clear API errors: 429 passes
through with Retry-After, 503 / unreachable / timeout → 503, anything else → 502.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from service.http.client import HTTPClient
from service.http.errors import HTTPError
from service.logs.search.chat.tools import SCHEMAS, Tools
from service.logs.search.config import ChatConfig

MAX_ITERATIONS = 5
SYSTEM_PROMPT = (
    "You answer questions about the logs this node received. Always use the tools before answering; when the "
    "user mentions a time range, pass it (minutes, or from/to in Unix ms). Quote log lines in code blocks, give "
    "timestamps and exact counts from the tool results, answer in Markdown and in the user's language."
)


def _upstream_error(status: int, body: bytes, headers: Any) -> HTTPError:
    try:
        detail = orjson.loads(body).get("error")
        message = detail.get("message") if isinstance(detail, dict) else detail
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    text = f"chat provider answered HTTP {status}" + (f": {str(message)[:300]}" if message else "")
    if status == 429:
        retry = headers.get("Retry-After")
        return HTTPError(429, text, {"Retry-After": retry} if retry else None)
    if status == 503:
        return HTTPError(503, text)
    return HTTPError(502, text)


class Provider:
    def __init__(self, config: ChatConfig, client: HTTPClient | None = None) -> None:
        self.config = config
        self.client = client or HTTPClient(timeout=float(config.timeout))
        self.url = config.url.rstrip("/") + "/chat/completions"

    async def close(self) -> None:
        await self.client.close()

    async def _complete(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        try:
            key = self.config.api_key()
        except OSError as exc:
            raise HTTPError(500, f"cannot read chat api_key_file: {exc.strerror}") from None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {"model": self.config.model, "messages": messages, "tools": SCHEMAS, "tool_choice": "auto",
                "max_tokens": self.config.max_tokens}
        session = await self.client.session()
        try:
            async with session.post(self.url, data=orjson.dumps(body), headers=headers,
                                    **self.client.request_options()) as resp:
                raw = await resp.read()
                if resp.status // 100 != 2:
                    raise _upstream_error(resp.status, raw, resp.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise HTTPError(503, f"chat provider unreachable: {exc!r}"[:300]) from None
        try:
            data = orjson.loads(raw)
            data["choices"][0]["message"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise HTTPError(502, "chat provider answered an invalid completion") from None
        return data

    async def answer(self, messages: list[dict[str, str]], tools: Tools) -> dict[str, Any]:
        convo: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}, *messages]
        calls: list[dict[str, Any]] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        content = ""
        iterations = 0
        while iterations < MAX_ITERATIONS:
            iterations += 1
            data = await self._complete(convo)
            for key in usage:
                usage[key] += int((data.get("usage") or {}).get(key) or 0)
            message = data["choices"][0]["message"]
            content = message.get("content") or ""
            tool_calls = message.get("tool_calls") or []
            if not tool_calls:
                break
            convo.append({"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls})
            for tc in tool_calls:
                fn = tc.get("function") or {}
                name = str(fn.get("name", ""))
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                    if not isinstance(args, dict):
                        raise TypeError
                except (orjson.JSONDecodeError, TypeError):
                    args = {}
                    result, summary = {"error": "arguments must be a JSON object"}, "error: bad arguments"
                else:
                    result, summary = await tools.call(name, args)
                calls.append({"name": name, "arguments": args, "result": summary})
                convo.append({"role": "tool", "tool_call_id": tc.get("id", ""), "content": orjson.dumps(result)
                              .decode()})
        if not content:
            content = "The model gave no answer within the tool-call limit." if calls else "No answer."
        return {"answer": content, "toolCalls": calls, "iterations": iterations, "mode": "openai",
                "model": self.config.model, "usage": usage}
