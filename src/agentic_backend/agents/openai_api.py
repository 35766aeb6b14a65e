"""An OpenAI-compatible face: ``GET /v1/models`` and ``POST /v1/chat/completions``, so that OpenAI's SDKs
and the tools built on them (chat UIs, LangChain, evaluation harnesses) can talk to the agents.

``model`` names an agent type; the last message, the user's, is the query, and the earlier ones are its
history (system and developer messages as system turns); a conversation ending in ``tool`` results (of
the caller's tools) continues the run instead. Everything else is the native route's: the same keys and
permission (``agents:query``), rate and token limits, budget, cache (for a conversation of one message),
ledger, metrics and streaming. The reply is a ``chat.completion`` (or, with ``"stream": true``, its
``chat.completion.chunk`` events ending in ``data: [DONE]``, and a usage chunk when
``stream_options.include_usage`` asks); errors have OpenAI's shape (core/errors.py).

Every request parameter is checked as OpenAI checks it (types, ranges, counts; an unknown one is refused)
and is either honoured or refused with a 400 naming the ``param``, never dropped:

- honoured: ``max_completion_tokens`` / ``max_tokens`` (caps each model call's answer and what it reserves
  of the budget; an answer cut there ends with ``finish_reason: "length"``), ``temperature``, ``top_p``,
  ``seed``, ``stop``, ``frequency_penalty``, ``presence_penalty``, ``reasoning_effort`` and
  ``response_format`` (``json_object``, ``json_schema``) passed to the provider with every model call
  (Anthropic: structured output; it takes no seed or penalties, so those are refused for its agent
  types), caller ``tools`` with ``tool_choice`` and ``parallel_tool_calls`` (offered beside the agent
  type's own tools, which still run here; a call of the caller's ends the answer with its ``tool_calls``,
  and the caller's next request, ending in the ``tool`` results, continues the run), ``stream``,
  ``stream_options.include_usage``, ``user``, ``safety_identifier`` and ``metadata`` (kept in the ledger;
  16 pairs of at most 64 and 512 characters), ``n: 1``, ``store: false``, ``service_tier: auto|default``;
- refused: ``n`` above 1, the deprecated ``functions`` and ``function_call``, ``logprobs``, ``logit_bias``,
  audio output, ``prediction``, ``web_search_options``, ``verbosity``, ``prompt_cache_key`` (the service
  caches by the query), ``store: true``, other service tiers, non-text content parts.

Errors are OpenAI's: a spent budget is 429 ``insufficient_quota`` (the native route's 402 has no class in
OpenAI's SDKs), an unknown model 404 ``model_not_found``. A cached answer reports the tokens it holds,
its input as ``prompt_tokens_details.cached_tokens``, and ``X-Agentic-Cost-Dollars: 0.0``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from agentic_backend import state
from agentic_backend.agents.deps import AgentsQuerier, query_call
from agentic_backend.agents.openai_common import (
    INTEGRAL,
    ROUTE_ERRORS,
    FunctionFields,
    Integer,
    Number,
    Temperature,
    TopP,
    agent_for,
    caller_tools,
    refuse_for_provider,
    reported_tokens,
)
from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.router import answered
from agentic_backend.agents.runtime import QueryOptions
from agentic_backend.agents.schemas import QueryRequest, QueryResponse
from agentic_backend.agents.streaming import (
    KEEPALIVE,
    MEDIA_TYPE,
    SSE_EVENT_SCHEMA,
    Event,
    QueryStream,
    sse_response,
)
from agentic_backend.core.bodies import body_schema
from agentic_backend.core.errors import BadRequest, openai_error
from agentic_backend.core.routes import RequestRoute
from agentic_backend.llm.base import CallOptions, Message, ToolCall, ToolSpec

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=RequestRoute)

_MAX_MESSAGES = 1000
_FINISH = {
    "answer": "stop",
    "cache": "stop",
    "step_limit": "length",
    "budget": "length",
    "length": "length",
    "tool_calls": "tool_calls",
}


class ContentPart(BaseModel):
    """A text part of a message (images, audio and files are not taken: agents read text)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: StrictStr = Field(max_length=100_000, description="The call's arguments: a JSON object.")


class MessageToolCall(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, refusal, audio, ...: a turn's own fields, not used

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    tool_calls: list[MessageToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=200)


class CallerTool(BaseModel):
    """A tool of the caller's: offered to the model beside the agent type's own; the caller runs it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionFields


class NamedTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: dict[Literal["name"], str]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False
    include_obfuscation: StrictBool = Field(default=False, description="Accepted; no padding is sent.")


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: ``text``, ``json_object``, or ``json_schema`` with a schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


Penalty = Annotated[Number, Field(ge=-2.0, le=2.0)]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request, checked as OpenAI checks it (an unknown parameter, a wrong type or
    a value out of range is a 400 naming the ``param``); ``model`` is an agent type (``GET /v1/models``).
    Every parameter is honoured or refused: see the module's docstring."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=_MAX_MESSAGES)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1), INTEGRAL] | None = Field(
        default=None, description="Deprecated by OpenAI; as below."
    )
    max_completion_tokens: Annotated[StrictInt, Field(ge=1), INTEGRAL] | None = Field(
        default=None, description="Caps each model call's answer (and what it reserves of the budget)."
    )
    temperature: Temperature | None = None
    top_p: TopP | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    seed: Integer | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    user: StrictStr | None = Field(default=None, max_length=256)
    safety_identifier: StrictStr | None = Field(default=None, max_length=256)
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[StrictStr, Field(max_length=512)]] | None
    ) = Field(default=None, max_length=16)
    store: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # Validated, then refused unless they ask for nothing (route: _refuse_unsupported).
    n: Annotated[StrictInt, Field(ge=1, le=128), INTEGRAL] | None = Field(
        default=None, description="Must be 1: an agent gives one answer."
    )
    tools: list[CallerTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20), INTEGRAL] | None = Field(default=None)
    logit_bias: dict[str, Annotated[Number, Field(ge=-100.0, le=100.0)]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: StrictStr | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: StrictStr | dict[str, Any] | None = None

    def options(self, tools: tuple[ToolSpec, ...], resume: bool) -> QueryOptions:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        response_format = None
        if self.response_format is not None and self.response_format.type != "text":
            response_format = self.response_format.model_dump(by_alias=True, exclude_none=True)
        choice = self.tool_choice
        call = CallOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            response_format=response_format,
            reasoning_effort=self.reasoning_effort,
            tool_choice=choice.function["name"] if isinstance(choice, NamedTool) else choice,
            parallel_tool_calls=self.parallel_tool_calls if tools else None,
        )
        return QueryOptions(
            self.max_completion_tokens or self.max_tokens,
            call,
            end_user=self.user or self.safety_identifier,
            tags=self.metadata or None,
            tools=tools,
            resume=resume,
        )


# What is refused when set to anything but "nothing asked": (parameter, its harmless values, why).
_REFUSED: tuple[tuple[str, tuple[object, ...], str], ...] = (
    ("n", (None, 1), "an agent gives one answer; n must be 1"),
    ("functions", (None, []), "deprecated by OpenAI: give tools"),
    ("function_call", (None, "none", "auto"), "deprecated by OpenAI: give tool_choice"),
    ("logprobs", (None, False), "agents do not return log probabilities"),
    ("top_logprobs", (None, 0), "agents do not return log probabilities"),
    ("logit_bias", (None, {}), "the agent type decides its model's sampling"),
    ("modalities", (None, ["text"]), "agents answer in text"),
    ("audio", (None,), "agents answer in text"),
    ("prediction", (None,), "predicted outputs are not taken"),
    ("web_search_options", (None,), "agents search through their own tools"),
    ("verbosity", (None,), "not passed to the model"),
    ("store", (None, False), "answers are not stored for OpenAI's evals or distillation"),
    ("service_tier", (None, "auto", "default"), "one tier of service"),
    ("prompt_cache_key", (None,), "the service caches by the query itself (AGENTIC_CACHE_SCOPE)"),
    ("prompt_cache_retention", (None,), "the service caches by the query itself (AGENTIC_CACHE_TTL_SECONDS)"),
    ("stream_options", (None,), "only with stream: true"),
)


def _refuse_unsupported(body: ChatCompletionRequest, provider: str) -> None:
    """A 400 naming the first parameter asked for that this service does not do, rather than dropping it."""
    for name, harmless, why in _REFUSED:
        value = getattr(body, name)
        if name == "stream_options" and body.stream:
            continue
        if value not in harmless:
            raise BadRequest(f"Unsupported parameter: '{name}': {why}.", param=name)
    asked = {name: getattr(body, name) for name in ("seed", "frequency_penalty", "presence_penalty")}
    refuse_for_provider(provider, asked, body.temperature)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise BadRequest(
            "Give max_tokens or max_completion_tokens, not both (max_tokens is deprecated).",
            param="max_tokens",
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


def _conversation(body: ChatCompletionRequest) -> tuple[QueryRequest, list[Message], bool]:
    """The query, its history, and whether the run resumes the history (it ends in the caller's tool
    results) rather than answering a new user turn."""
    *earlier, last = body.messages
    if last.role not in ("user", "tool"):
        raise BadRequest(
            "the last message must be the user's (the query) or a tool's result (to continue).",
            param=f"messages[{len(earlier)}].role",
        )
    resume = last.role == "tool"
    history = [_message(message, n) for n, message in enumerate(body.messages if resume else earlier)]
    called = {call.id for m in history for call in m.tool_calls}
    for n, message in enumerate(history):
        if message.role == "tool" and message.tool_call_id not in called:
            raise BadRequest(
                "a tool message answers a tool call of an earlier assistant message: its tool_call_id is "
                "not one of theirs.",
                param=f"messages[{n}].tool_call_id",
            )
    text = _text(last) if not resume else next((_text(m) for m in reversed(earlier) if m.role == "user"), "")
    try:
        query = QueryRequest(query=text or "(the tools' results)")
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise BadRequest(
            f"messages[{len(earlier)}].content: {problem}.", param=f"messages[{len(earlier)}].content"
        ) from None
    return query, history, resume


def _message(message: ChatMessage, n: int) -> Message:
    """One turn as the agent's runtime takes it: a caller's tool calls and their results kept."""
    if message.role == "tool":
        if not message.tool_call_id:
            raise BadRequest("a tool message needs its tool_call_id.", param=f"messages[{n}].tool_call_id")
        return Message("tool", _text(message), tool_call_id=message.tool_call_id)
    calls = []
    for m, call in enumerate(message.tool_calls or ()):
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise BadRequest(
                "a tool call's arguments are a JSON object.",
                param=f"messages[{n}].tool_calls[{m}].function.arguments",
            )
        calls.append(ToolCall(call.id, call.function.name, arguments))
    role = "system" if message.role == "developer" else message.role
    return Message(role, _text(message), tuple(calls))


def _caller_tools(body: ChatCompletionRequest, agent: AgentType) -> tuple[ToolSpec, ...]:
    choice = body.tool_choice
    chosen = choice.function.get("name") if isinstance(choice, NamedTool) else choice
    return caller_tools([t.function for t in body.tools or ()], agent, "tools[{}].function.name", chosen)


def _usage(response: QueryResponse) -> dict[str, Any]:
    """OpenAI's chat-completion usage object (openai_common.reported_tokens says which tokens)."""
    tokens, cached = reported_tokens(response)
    return {
        "prompt_tokens": tokens.input,
        "completion_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": tokens.reasoning},
    }


@router.get("/models")
async def list_models(_: AgentsQuerier, request: Request) -> ModelList:
    """The agent types, as OpenAI models."""
    return ModelList(data=[ModelCard(id=name) for name in sorted(state.of(request.app).agents.agents)])


@router.get("/models/{model}", responses={404: {"description": "No agent type of this name."}})
async def get_model(model: str, _: AgentsQuerier, request: Request) -> ModelCard:
    """One agent type, as an OpenAI model."""
    agent_for(state.of(request.app).agents, model)
    return ModelCard(id=model)


@router.post(
    "/chat/completions",
    openapi_extra=body_schema(ChatCompletionRequest),
    responses={
        200: {
            "description": "A chat.completion; with 'stream': true, chat.completion.chunk events (SSE).",
            "content": {MEDIA_TYPE: {"schema": SSE_EVENT_SCHEMA}},
        },
        **ROUTE_ERRORS,
    },
)
async def chat_completions(
    request: Request,
) -> Response:
    """Run the agent named by ``model`` on the conversation, as OpenAI's chat completions API does."""
    principal, body = await query_call(request, ChatCompletionRequest)
    services = state.of(request.app)  # not dependencies: state.py
    agents, settings = services.agents, services.settings
    agent = agent_for(agents, body.model)
    _refuse_unsupported(body, agent.provider)
    query, history, resume = _conversation(body)
    options = body.options(_caller_tools(body, agent), resume)
    created = int(time.time())
    if not body.stream:
        response = await agents.query(principal, body.model, query, conversation=history, options=options)
        headers = answered(request, response)
        return Response(
            content=ChatCompletion.of(response, body.model, created).model_dump_json(),
            media_type="application/json",
            headers=headers,
        )
    stream = QueryStream(
        agents,
        principal,
        body.model,
        query,
        keepalive_seconds=settings.stream_keepalive_seconds,
        conversation=history,
        options=options,
        on_done=lambda response: answered(request, response),
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
    usage: dict[str, Any]
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
                    "message": _message_out(response),
                    "finish_reason": _FINISH.get(response.stop_reason, "stop"),
                    "logprobs": None,
                }
            ],
            usage=_usage(response),
        )


def _tool_calls_out(response: QueryResponse) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in response.tool_calls
    ]


def _message_out(response: QueryResponse) -> dict[str, Any]:
    if not response.tool_calls:
        return {"role": "assistant", "content": response.answer}
    return {"role": "assistant", "content": response.answer or None, "tool_calls": _tool_calls_out(response)}


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
                if response.tool_calls:
                    calls = [{"index": n, **call} for n, call in enumerate(_tool_calls_out(response))]
                    yield chunk({"tool_calls": calls})
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
