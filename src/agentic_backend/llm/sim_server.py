"""``agentic-backend sim-llm``: the ``sim`` provider served over HTTP in OpenAI's and Anthropic's wire
formats, so the real SDK adapters can be tested (and load-tested) without a network or keys.

POST /v1/chat/completions (OpenAI) and POST /v1/messages (Anthropic), each also streamed (``"stream":
true``: OpenAI's ``chat.completion.chunk`` events ending in ``[DONE]``, with the usage chunk when
``stream_options.include_usage`` asks; Anthropic's ``message_start`` … ``message_stop`` events), a token per
event at the sim's token rate. A ``#fail:<kind>`` directive in the last user message makes it answer as a
failing provider would: 429, 401, 500, a garbled body, or no answer in time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agentic_backend.llm.base import DEFAULT_MAX_TOKENS, CallOptions, Completion, Message, ToolCall, ToolSpec
from agentic_backend.llm.errors import ProviderError
from agentic_backend.llm.openai_provider import openai_tool_calls
from agentic_backend.llm.sim import SimProvider, token_pieces

_STATUS = {"rate_limit": 429, "auth": 401, "server": 500}


def _error(exc: ProviderError, wire: str) -> Response:
    if exc.kind == "bad_response":
        return Response(b"{not json", status_code=200, media_type="application/json")
    status = _STATUS.get(exc.kind, 500)
    if wire == "openai":
        body: dict[str, Any] = {"error": {"message": exc.detail, "type": exc.kind, "code": exc.kind}}
    else:
        body = {"type": "error", "error": {"type": exc.kind, "message": exc.detail}}
    # A 429 carries its Retry-After, as providers send it.
    return JSONResponse(body, status_code=status, headers=exc.headers)


def _openai_messages(raw: list[dict[str, Any]]) -> list[Message]:
    messages = []
    for m in raw:
        calls = tuple(
            ToolCall(c["id"], c["function"]["name"], json.loads(c["function"].get("arguments") or "{}"))
            for c in m.get("tool_calls") or []
        )
        content = m.get("content") or ""
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        messages.append(Message(m["role"], content, calls, m.get("tool_call_id")))
    return messages


def _anthropic_messages(system: Any, raw: list[dict[str, Any]]) -> list[Message]:
    messages = (
        [Message("system", system if isinstance(system, str) else json.dumps(system))] if system else []
    )
    for m in raw:
        content = m["content"]
        if isinstance(content, str):
            messages.append(Message(m["role"], content))
            continue
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        calls = tuple(
            ToolCall(b["id"], b["name"], b.get("input") or {}) for b in content if b.get("type") == "tool_use"
        )
        results = [b for b in content if b.get("type") == "tool_result"]
        if results:
            for b in results:
                body = b.get("content")
                messages.append(
                    Message("tool", body if isinstance(body, str) else json.dumps(body), (), b["tool_use_id"])
                )
        else:
            messages.append(Message(m["role"], text, calls))
    return messages


def _sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _paced(pieces: list[str], interval: float) -> AsyncIterator[str]:
    for n, piece in enumerate(pieces):
        if interval and n:
            await asyncio.sleep(interval)
        yield piece


def _openai_usage(result: Completion) -> dict[str, Any]:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
    }


def _anthropic_usage(result: Completion, output_tokens: int) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` without the cached input, which it counts apart."""
    cached = result.cache_read_tokens + result.cache_write_tokens
    return {
        "input_tokens": result.input_tokens - cached,
        "cache_read_input_tokens": result.cache_read_tokens,
        "cache_creation_input_tokens": result.cache_write_tokens,
        "output_tokens": output_tokens,
    }


def _openai_finish(result: Completion) -> str:
    return "tool_calls" if result.tool_calls else "length" if result.truncated else "stop"


def _anthropic_stop(result: Completion) -> str:
    return "tool_use" if result.tool_calls else "max_tokens" if result.truncated else "end_turn"


def _openai_options(body: dict[str, Any]) -> CallOptions:
    """The sampling parameters of a chat-completions body (sim honours stop, seed and the format)."""
    stop = body.get("stop")
    return CallOptions(
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        seed=body.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        frequency_penalty=body.get("frequency_penalty"),
        presence_penalty=body.get("presence_penalty"),
        response_format=body.get("response_format"),
        reasoning_effort=body.get("reasoning_effort"),
        tool_choice=_openai_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
    )


def _openai_tool_choice(raw: Any) -> str | None:
    if isinstance(raw, dict):
        return str(raw.get("function", {}).get("name"))
    return raw if isinstance(raw, str) else None


def _anthropic_tool_choice(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    kind = raw.get("type")
    return {"any": "required", "auto": "auto", "none": "none"}.get(str(kind)) or raw.get("name")


def _anthropic_options(body: dict[str, Any]) -> CallOptions:
    """A Messages API body's options; structured output (``output_config.format``) as a JSON schema."""
    output = (body.get("output_config") or {}).get("format")
    response_format = {"type": "json_schema", "json_schema": {"schema": output["schema"]}} if output else None
    return CallOptions(
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=tuple(body.get("stop_sequences") or ()),
        response_format=response_format,
        tool_choice=_anthropic_tool_choice(body.get("tool_choice")),
    )


async def _openai_stream(
    result: Completion, model: str, include_usage: bool, interval: float
) -> AsyncIterator[bytes]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": 0}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    async for piece in _paced(token_pieces(result.text or ""), interval):
        yield chunk({"content": piece})
    for index, call in enumerate(openai_tool_calls(result.tool_calls)):
        arguments = call["function"]["arguments"]
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        yield chunk({"tool_calls": [{"index": index, **head}]})
        for piece in token_pieces(arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _openai_finish(result))
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _openai_usage(result)})
    yield b"data: [DONE]\n\n"


async def _anthropic_stream(result: Completion, model: str, interval: float) -> AsyncIterator[bytes]:
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(result, 1),
    }
    yield _sse({"type": "message_start", "message": message}, "message_start")
    index = 0
    if result.text:
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        yield _sse(block, "content_block_start")
        async for piece in _paced(token_pieces(result.text), interval):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            yield _sse(delta, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        index = 1
    for call in result.tool_calls:
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        yield _sse(
            {"type": "content_block_start", "index": index, "content_block": start}, "content_block_start"
        )
        for piece in token_pieces(json.dumps(call.arguments)):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        index += 1
    stop = {"stop_reason": _anthropic_stop(result), "stop_sequence": None}
    usage = {"output_tokens": result.output_tokens}
    yield _sse({"type": "message_delta", "delta": stop, "usage": usage}, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def _openai_completion(result: Completion, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object as OpenAI's API returns it."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["tool_calls"] = openai_tool_calls(result.tool_calls)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _openai_finish(result)}],
        "usage": _openai_usage(result),
    }


def _anthropic_message(result: Completion, model: str) -> dict[str, Any]:
    """A ``message`` object as Anthropic's Messages API returns it."""
    content: list[dict[str, Any]] = [{"type": "text", "text": result.text}] if result.text else []
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in result.tool_calls
    ]
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _anthropic_stop(result),
        "stop_sequence": None,
        "usage": _anthropic_usage(result, result.output_tokens),
    }


def create_sim_server(provider: SimProvider | None = None) -> FastAPI:
    sim = provider or SimProvider()
    app = FastAPI(title="sim LLM", docs_url=None, redoc_url=None)
    calls = {"openai": 0, "anthropic": 0}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        """Requests received per wire format (tests use it to see retries)."""
        return calls

    async def complete(
        model: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int, options: CallOptions
    ) -> Completion:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        if "#fail:timeout" in last and messages[-1].role == "user":
            await asyncio.sleep(3600)  # the client's timeout ends it
        return await sim.complete(model, messages, tools, timeout=600, max_tokens=max_tokens, options=options)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        calls["openai"] += 1
        body = await request.json()
        tools = [
            ToolSpec(
                t["function"]["name"],
                t["function"].get("description", ""),
                t["function"].get("parameters", {}),
            )
            for t in body.get("tools") or []
        ]
        try:
            max_tokens = int(
                body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
            )
            messages = _openai_messages(body["messages"])
            result = await complete(body["model"], messages, tools, max_tokens, _openai_options(body))
        except ProviderError as exc:
            return _error(exc, "openai")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _openai_stream(result, body["model"], include_usage, sim.token_interval)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(_openai_completion(result, body["model"]))

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        calls["anthropic"] += 1
        body = await request.json()
        tools = [
            ToolSpec(t["name"], t.get("description", ""), t.get("input_schema", {}))
            for t in body.get("tools") or []
        ]
        try:
            result = await complete(
                body["model"],
                _anthropic_messages(body.get("system"), body["messages"]),
                tools,
                int(body["max_tokens"]),  # required by the Messages API
                _anthropic_options(body),
            )
        except ProviderError as exc:
            return _error(exc, "anthropic")
        if body.get("stream"):
            events = _anthropic_stream(result, body["model"], sim.token_interval)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(_anthropic_message(result, body["model"]))

    return app
