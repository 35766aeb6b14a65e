"""An OpenAI-compatible face: ``GET /v1/models`` and ``POST /v1/chat/completions``, so that OpenAI's SDKs
and the tools built on them (chat UIs, LangChain, evaluation harnesses) can talk to the agents.

``model`` names an agent type; the last message, which must be the user's, is the query, and the earlier
ones are its history (system and developer messages as system turns, tool messages dropped: the agent
runs its own tools). Everything else is the native route's: the same keys and permission
(``agents:query``), rate and token limits, budget, cache (for a conversation of one message), ledger,
metrics and streaming. The reply is a ``chat.completion`` (or, with ``"stream": true``, its
``chat.completion.chunk`` events ending in ``data: [DONE]``, and a usage chunk when
``stream_options.include_usage`` asks); errors have OpenAI's shape (core/errors.py).

Sampling parameters (``temperature``, ``top_p``, ``seed``, ...) are accepted and ignored: the agent type
fixes its model's settings. What cannot be honoured is refused with a 400 rather than silently dropped:
``n`` other than 1, caller-supplied ``tools``, and non-text content parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentic_backend.agents.deps import AgentServiceDep, AgentsQuerier
from agentic_backend.agents.router import log_usage
from agentic_backend.agents.schemas import QueryRequest, QueryResponse
from agentic_backend.agents.streaming import KEEPALIVE, MEDIA_TYPE, Event, QueryStream, sse_response
from agentic_backend.core.deps import SettingsDep
from agentic_backend.core.errors import BadRequest, NotFound, openai_error
from agentic_backend.llm.base import Message

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

_MAX_MESSAGES = 1000
_FINISH = {"answer": "stop", "cache": "stop", "step_limit": "length", "budget": "length"}


class ContentPart(BaseModel):
    """A text part of a message (images, audio and files are not taken: agents read text)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, refusal, ...: accepted, not used

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; ``model`` is an agent type (``GET /v1/models``)."""

    model_config = ConfigDict(extra="allow")  # sampling parameters: accepted, the agent type decides

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=_MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] | None = Field(default=None, description="Must be 1: an agent gives one answer.")
    tools: list[Any] | None = Field(
        default=None,
        max_length=0,
        description="Not taken: the agent type runs its own tools.",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "agentic-backend"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


def _conversation(body: ChatCompletionRequest) -> tuple[QueryRequest, list[Message]]:
    *earlier, last = body.messages
    if last.role != "user":
        raise BadRequest("the last message must be the user's: it is the query.")
    history = []
    for message in earlier:
        if message.role == "tool":
            continue
        role = "system" if message.role == "developer" else message.role
        history.append(Message(role, _text(message)))
    try:
        query = QueryRequest(query=_text(last))
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise BadRequest(f"messages[{len(earlier)}].content: {problem}.") from None
    return query, history


def _usage(response: QueryResponse) -> dict[str, int]:
    tokens = response.tokens
    return {
        "prompt_tokens": tokens.input,
        "completion_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
    }


@router.get("/models")
async def list_models(_: AgentsQuerier, agents: AgentServiceDep) -> ModelList:
    """The agent types, as OpenAI models."""
    return ModelList(data=[ModelCard(id=name) for name in sorted(agents.agents)])


@router.get("/models/{model}", responses={404: {"description": "No agent type of this name."}})
async def get_model(model: str, _: AgentsQuerier, agents: AgentServiceDep) -> ModelCard:
    """One agent type, as an OpenAI model."""
    if model not in agents.agents:
        raise NotFound(f"The model '{model}' does not exist; GET /v1/models lists the agent types.")
    return ModelCard(id=model)


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "A chat.completion; with 'stream': true, chat.completion.chunk events (SSE).",
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        402: {"description": "The key's monthly budget is spent."},
        404: {"description": "No agent type of this name (model)."},
        502: {"description": "The provider failed or answered something unusable."},
        503: {"description": "The agent's provider is not configured."},
        504: {"description": "The provider or the query's deadline timed out."},
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: AgentsQuerier,
    agents: AgentServiceDep,
    request: Request,
    settings: SettingsDep,
) -> Response:
    """Run the agent named by ``model`` on the conversation, as OpenAI's chat completions API does."""
    if body.model not in agents.agents:
        raise NotFound(f"The model '{body.model}' does not exist; GET /v1/models lists the agent types.")
    query, history = _conversation(body)
    created = int(time.time())
    if not body.stream:
        response = await agents.query(principal, body.model, query, conversation=history)
        log_usage(request, response)
        return Response(
            content=ChatCompletion.of(response, body.model, created).model_dump_json(),
            media_type="application/json",
        )
    stream = QueryStream(
        agents,
        principal,
        body.model,
        query,
        keepalive_seconds=settings.stream_keepalive_seconds,
        conversation=history,
        on_done=lambda response: log_usage(request, response),
    )
    first = await stream.first()  # a refusal raises here: an OpenAI-shaped error
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    return sse_response(_chunks(stream, first, body.model, created, include_usage=include_usage))


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, int]
    system_fingerprint: str | None = None

    @classmethod
    def of(cls, response: QueryResponse, model: str, created: int) -> ChatCompletion:
        return cls(
            id=f"chatcmpl-{response.request_id}",
            created=created,
            model=model,
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": response.answer},
                    "finish_reason": _FINISH.get(response.stop_reason, "stop"),
                    "logprobs": None,
                }
            ],
            usage=_usage(response),
        )


async def _chunks(
    stream: QueryStream, first: Event, model: str, created: int, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """The native events as OpenAI's chunks: the role first, then content deltas, the finish reason,
    the usage (if asked) and [DONE]; steps are not part of OpenAI's format and are left out."""
    chunk_id = "chatcmpl-"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + _json(data) + b"\n\n"

    try:
        async for event in stream.items(first):
            if event is None:
                yield KEEPALIVE
                continue
            kind, data = event
            if kind == "start":
                chunk_id = f"chatcmpl-{data['request_id']}"
                yield chunk({"role": "assistant", "content": ""})
            elif kind == "delta":
                yield chunk({"content": data["text"]})
            elif kind == "done":
                response = QueryResponse.model_validate(data)
                yield chunk({}, _FINISH.get(response.stop_reason, "stop"))
                if include_usage:
                    usage = {"id": chunk_id, "object": "chat.completion.chunk", "created": created}
                    usage |= {"model": model, "choices": [], "usage": _usage(response)}
                    yield b"data: " + _json(usage) + b"\n\n"
            elif kind == "error":  # after the start: OpenAI streams an error object, then ends
                status = 500 if data["error"] == "InternalServerError" else 502
                body = openai_error(data["error"], data["detail"], status)
                body["error"]["request_id"] = data["request_id"]
                yield b"data: " + _json(body) + b"\n\n"
    finally:
        await stream.close()  # the client left while this generator was between events
    yield b"data: [DONE]\n\n"


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
