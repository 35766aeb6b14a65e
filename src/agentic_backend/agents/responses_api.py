"""OpenAI's Responses API, ``POST /v1/responses``: what OpenAI's newer SDKs and the openai-agents SDK call
by default, on the same path as every query (keys, limits, budget, cache, ledger, metrics, traces).

``model`` names an agent type. ``input`` is a text or a list of items: messages (``role`` and text
``content`` or ``input_text``/``output_text`` parts), the model's ``function_call`` items and the caller's
``function_call_output`` items, which continue a run that stopped at a call of the caller's tools.
``instructions`` come first as a system turn. ``previous_response_id`` continues a conversation the
service kept (``store``, on by default, keeps each answer's conversation for as long as an idle session
lives; only the key that made it can continue it). Honoured too: ``max_output_tokens`` (the answer cut
there is ``status: "incomplete"``), ``temperature``, ``top_p``, ``text.format`` (``json_object``,
``json_schema``), caller ``tools`` (function tools) with ``tool_choice`` and ``parallel_tool_calls``,
``reasoning.effort``, ``user``/``safety_identifier`` and ``metadata`` (the ledger keeps them), ``stream``
with the API's typed events (``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta``, …,
``response.completed`` with the usage). Refused with OpenAI's error shape, naming the ``param``: built-in
tools (web search, file search, ...), ``include``, ``background``, ``conversation``, ``prompt``,
``truncation: auto``, ``text.verbosity``, ``reasoning.summary``, ``top_logprobs``, and unknown parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from agentic_backend.agents.deps import query_call
from agentic_backend.agents.openai_common import (
    INTEGRAL,
    ROUTE_ERRORS,
    FunctionFields,
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
from agentic_backend.agents.schemas import QueryRequest, QueryResponse, Tags
from agentic_backend.agents.streaming import (
    KEEPALIVE,
    MEDIA_TYPE,
    SSE_EVENT_SCHEMA,
    Event,
    QueryStream,
    sse_response,
)
from agentic_backend.core.bodies import body_schema
from agentic_backend.core.errors import BadRequest
from agentic_backend.core.routes import RequestRoute
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import CallOptions, Message, ToolCall, ToolSpec
from agentic_backend.sessions.service import SessionService

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=RequestRoute)

_STATUS = {"length": "incomplete", "budget": "incomplete", "step_limit": "incomplete"}


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class FunctionTool(FunctionFields):
    type: Literal["function"]


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: str


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: StrictStr | None = None
    generate_summary: StrictStr | None = None


class ResponsesRequest(BaseModel):
    """OpenAI's ``responses.create``; ``model`` is an agent type (``GET /v1/models``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: StrictStr | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1000)]
    instructions: StrictStr | None = Field(default=None, max_length=100_000)
    previous_response_id: str | None = Field(default=None, max_length=40)
    max_output_tokens: Annotated[StrictInt, Field(ge=16), INTEGRAL] | None = Field(default=None)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    text: TextConfig | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: StrictBool | None = None
    reasoning: Reasoning | None = None
    stream: StrictBool | None = False
    stream_options: dict[Literal["include_obfuscation"], StrictBool] | None = None
    store: StrictBool | None = True
    metadata: Tags | None = None
    user: StrictStr | None = Field(default=None, max_length=256)
    safety_identifier: StrictStr | None = Field(default=None, max_length=256)
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # Validated, then refused unless they ask for nothing.
    include: list[StrictStr] | None = None
    background: StrictBool | None = None
    conversation: StrictStr | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    prompt_cache_key: StrictStr | None = None
    max_tool_calls: Annotated[StrictInt, Field(ge=1), INTEGRAL] | None = Field(default=None)
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20), INTEGRAL] | None = Field(default=None)

    def refuse_unsupported(self, provider: str) -> None:
        refused: tuple[tuple[str, object, tuple[object, ...], str], ...] = (
            ("include", self.include, (None, []), "no extra output data is returned"),
            ("background", self.background, (None, False), "responses are answered in the request"),
            ("conversation", self.conversation, (None,), "give previous_response_id"),
            ("prompt", self.prompt, (None,), "the agent type holds its prompt"),
            ("prompt_cache_key", self.prompt_cache_key, (None,), "the service caches by the query itself"),
            ("max_tool_calls", self.max_tool_calls, (None,), "the agent type's max_steps bounds its calls"),
            ("top_logprobs", self.top_logprobs, (None, 0), "agents do not return log probabilities"),
            ("truncation", self.truncation, (None, "disabled"), "a conversation is never cut to fit"),
            ("service_tier", self.service_tier, (None, "auto", "default"), "one tier of service"),
            ("text.verbosity", self.text and self.text.verbosity, (None,), "not passed to the model"),
            (
                "reasoning.summary",
                self.reasoning and (self.reasoning.summary or self.reasoning.generate_summary),
                (None,),
                "no reasoning summaries",
            ),
        )
        for name, value, harmless, why in refused:
            if value not in harmless:
                raise BadRequest(f"Unsupported parameter: '{name}': {why}.", param=name)
        refuse_for_provider(provider, {}, self.temperature)

    def options(self, tools: tuple[ToolSpec, ...], resume: bool) -> QueryOptions:
        fmt = self.text.format if self.text is not None else None
        response_format: dict[str, Any] | None = None
        if fmt is not None and fmt.type == "json_object":
            response_format = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            schema = {"name": fmt.name or "response", "schema": fmt.schema_ or {"type": "object"}}
            response_format = {"type": "json_schema", "json_schema": {**schema, "strict": bool(fmt.strict)}}
        choice = self.tool_choice
        call = CallOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            response_format=response_format,
            reasoning_effort=self.reasoning.effort if self.reasoning else None,
            tool_choice=choice.name if isinstance(choice, NamedFunction) else choice,
            parallel_tool_calls=self.parallel_tool_calls if tools else None,
        )
        return QueryOptions(
            self.max_output_tokens,
            call,
            end_user=self.user or self.safety_identifier,
            tags=self.metadata or None,
            tools=tools,
            resume=resume,
        )


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or its ``input_text``/``output_text``/``text`` parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"Invalid type for '{where}': expected a string or an array of parts.", param=where)
    texts = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text") or not isinstance(part.get("text"), str):
            raise BadRequest(
                f"Unsupported content part: '{kind}': agents read text (input_text).", param=f"{where}[{n}]"
            )
        texts.append(part["text"])
    return "".join(texts)


def _items(items: list[dict[str, Any]]) -> list[Message]:
    """Input items as the runtime's messages: consecutive function calls join one assistant turn."""
    messages: list[Message] = []
    for n, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("user", "assistant", "system", "developer"):
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append(Message(role, _text_of(item.get("content"), f"input[{n}].content")))
        elif kind == "function_call":
            call = _function_call(item, n)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls and not last.content:
                messages[-1] = Message("assistant", "", (*last.tool_calls, call))
            else:
                messages.append(Message("assistant", "", (call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(item.get("call_id"), str) or not isinstance(output, str | list):
                raise BadRequest("a function_call_output has a call_id and an output.", param=f"input[{n}]")
            text = output if isinstance(output, str) else _text_of(output, f"input[{n}].output")
            messages.append(Message("tool", text, tool_call_id=item["call_id"]))
        else:
            raise BadRequest(
                f"Unsupported input item: '{kind}' (messages, function_call, function_call_output only).",
                param=f"input[{n}]",
            )
    return messages


def _function_call(item: dict[str, Any], n: int) -> ToolCall:
    try:
        arguments = json.loads(item.get("arguments") or "{}")
    except (TypeError, ValueError):
        arguments = None
    if not isinstance(arguments, dict) or not isinstance(item.get("call_id"), str) or not item.get("name"):
        raise BadRequest(
            "a function_call has a call_id, a name and JSON object arguments.", param=f"input[{n}]"
        )
    return ToolCall(item["call_id"], str(item["name"]), arguments)


async def _conversation(
    body: ResponsesRequest, principal: Principal, sessions: SessionService
) -> tuple[QueryRequest, list[Message], bool]:
    """The query, its history (a stored conversation's, then ``input``'s) and whether the run resumes it
    (``input`` ends in function call outputs)."""
    given = [Message("user", body.input)] if isinstance(body.input, str) else _items(body.input)
    earlier = (
        await sessions.recall_response(principal, body.previous_response_id)
        if body.previous_response_id
        else []
    )
    history = [Message("system", body.instructions)] if body.instructions else []
    history += [m for m in earlier if m.role != "system"] + given
    last = history[-1] if history else None
    if last is None or last.role not in ("user", "tool"):
        raise BadRequest("the input must end with a user message or a function_call_output.", param="input")
    resume = last.role == "tool"
    called = {call.id for m in history for call in m.tool_calls}
    for message in history:
        if message.role == "tool" and message.tool_call_id not in called:
            raise BadRequest(
                f"No function call with call_id '{message.tool_call_id}' precedes its output.", param="input"
            )
    text = next((m.content for m in reversed(history) if m.role == "user"), "")
    try:
        query = QueryRequest(query=text or "(the tools' results)")
    except ValidationError as exc:
        raise BadRequest(f"input: {exc.errors()[0]['msg']}.", param="input") from None
    return query, history if resume else history[:-1], resume


def _caller_tools(body: ResponsesRequest, agent: AgentType) -> tuple[ToolSpec, ...]:
    choice = body.tool_choice
    chosen = choice.name if isinstance(choice, NamedFunction) else choice
    return caller_tools(list(body.tools or ()), agent, "tools[{}].name", chosen)


@router.post(
    "/responses",
    openapi_extra=body_schema(ResponsesRequest),
    responses={
        200: {
            "description": "A response object; with 'stream': true, its typed events (SSE).",
            "content": {MEDIA_TYPE: {"schema": SSE_EVENT_SCHEMA}},
        },
        **ROUTE_ERRORS,
    },
)
async def create_response(
    request: Request,
) -> Response:
    """Run the agent named by ``model`` on ``input``, as OpenAI's Responses API does."""
    principal, body = await query_call(request, ResponsesRequest)
    services = state.of(request.app)  # not dependencies: state.py
    agents, sessions, settings = services.agents, services.sessions, services.settings
    agent = agent_for(agents, body.model)
    body.refuse_unsupported(agent.provider)
    tools = _caller_tools(body, agent)
    query, history, resume = await _conversation(body, principal, sessions)
    options = body.options(tools, resume)
    created = int(time.time())

    def finished(response: QueryResponse) -> None:
        answered(request, response)

    if not body.stream:
        answer = await agents.query(principal, body.model, query, conversation=history, options=options)
        headers = answered(request, answer)
        if body.store is not False:
            await _keep(sessions, principal, answer, history, query, resume)
        reply = _response(answer, body, created, "completed")
        return Response(json.dumps(reply), media_type="application/json", headers=headers)
    stream = QueryStream(
        agents,
        principal,
        body.model,
        query,
        keepalive_seconds=settings.stream_keepalive_seconds,
        conversation=history,
        options=options,
        on_done=finished,
    )
    first = await stream.first()  # a refusal raises here: an OpenAI-shaped error
    keep = _Keep(sessions, principal, history, query, resume) if body.store is not False else None
    return sse_response(_events(stream, first, body, created, keep))


async def _keep(
    sessions: SessionService,
    principal: Principal,
    answer: QueryResponse,
    history: list[Message],
    query: QueryRequest,
    resume: bool,
) -> None:
    calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in answer.tool_calls)
    turn = [] if resume else [Message("user", query.query)]
    messages = [*history, *turn, Message("assistant", answer.answer, calls)]
    await sessions.keep_response(principal, _id(answer), messages)


def _id(answer: QueryResponse) -> str:
    return f"resp_{answer.request_id}"


def _output(answer: QueryResponse) -> list[dict[str, Any]]:
    """The response's output items: the message (if it has text), then each call of a caller's tool."""
    items: list[dict[str, Any]] = []
    if answer.answer or not answer.tool_calls:
        text = {"type": "output_text", "text": answer.answer, "annotations": [], "logprobs": []}
        items.append(
            {
                "type": "message",
                "id": f"msg_{answer.request_id}",
                "status": "completed",
                "role": "assistant",
                "content": [text],
            }
        )
    for call in answer.tool_calls:
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{call.id}",
                "call_id": call.id,
                "name": call.name,
                "arguments": json.dumps(call.arguments),
                "status": "completed",
            }
        )
    return items


def _usage(answer: QueryResponse) -> dict[str, Any]:
    tokens, cached = reported_tokens(answer)
    return {
        "input_tokens": tokens.input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": tokens.output,
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
        "total_tokens": tokens.input + tokens.output,
    }


def _response(
    answer: QueryResponse | None, body: ResponsesRequest, created: int, status: str, response_id: str = ""
) -> dict[str, Any]:
    """The response object: complete once answered, a shell (no output yet) while streaming."""
    if answer is not None:
        status = _STATUS.get(answer.stop_reason, status)
    reason = {"length": "max_output_tokens", "budget": "max_output_tokens", "step_limit": "max_output_tokens"}
    return {
        "id": _id(answer) if answer is not None else response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": body.model,
        "output": _output(answer) if answer is not None else [],
        "usage": _usage(answer) if answer is not None else None,
        "incomplete_details": {"reason": reason[answer.stop_reason]}
        if answer and answer.stop_reason in reason
        else None,
        "error": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": [t.model_dump(exclude_none=True) for t in body.tools or ()],
        "tool_choice": body.tool_choice
        if isinstance(body.tool_choice, str)
        else (body.tool_choice.model_dump() if body.tool_choice else "auto"),
        "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        "text": {
            "format": body.text.format.model_dump(by_alias=True, exclude_none=True)
            if body.text and body.text.format
            else {"type": "text"}
        },
        "previous_response_id": body.previous_response_id,
        "store": body.store is not False,
        "metadata": body.metadata or {},
        "user": body.user,
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None, "summary": None},
    }


async def _events(
    stream: QueryStream,
    first: Event,
    body: ResponsesRequest,
    created: int,
    keep: _Keep | None,
) -> AsyncIterator[bytes]:
    """The native events as the Responses API's typed events, numbered in order."""
    events = _Events(body, created)
    try:
        async for item in stream.items(first):
            if item is None:
                yield KEEPALIVE
                continue
            kind, data = item
            if kind == "start":
                frames = events.start(data["request_id"])
            elif kind == "delta":
                frames = events.delta(data["text"])
            elif kind == "done":
                answer = QueryResponse.model_validate(data)
                if keep is not None:
                    await _keep(keep.sessions, keep.principal, answer, keep.history, keep.query, keep.resume)
                frames = events.done(answer)
            elif kind == "error":  # after the start: the Responses API's failure event
                frames = events.failed(data["detail"])
            else:
                frames = []
            for frame in frames:
                yield frame
    finally:
        await stream.close()


@dataclass(frozen=True, slots=True)
class _Keep:
    """What storing a streamed answer's conversation needs once it is done."""

    sessions: SessionService
    principal: Principal
    history: list[Message]
    query: QueryRequest
    resume: bool


class _Events:
    """The typed events of one streamed response, each numbered (``sequence_number``)."""

    def __init__(self, body: ResponsesRequest, created: int) -> None:
        self._body, self._created = body, created
        self._sequence = 0
        self._response_id = self._item_id = ""
        self._text: list[str] = []
        self._part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}

    def _event(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    def _at(self, **data: Any) -> dict[str, Any]:
        return {"item_id": self._item_id, "output_index": 0, "content_index": 0, **data}

    def start(self, request_id: str) -> list[bytes]:
        self._response_id, self._item_id = f"resp_{request_id}", f"msg_{request_id}"
        shell = _response(None, self._body, self._created, "in_progress", self._response_id)
        message = {"type": "message", "id": self._item_id, "status": "in_progress", "role": "assistant"}
        return [
            self._event("response.created", response=shell),
            self._event("response.in_progress", response=shell),
            self._event("response.output_item.added", output_index=0, item={**message, "content": []}),
            self._event("response.content_part.added", **self._at(part=self._part)),
        ]

    def delta(self, text: str) -> list[bytes]:
        self._text.append(text)
        return [self._event("response.output_text.delta", **self._at(delta=text, logprobs=[]))]

    def done(self, answer: QueryResponse) -> list[bytes]:
        complete = _response(answer, self._body, self._created, "completed")
        whole = "".join(self._text) or answer.answer
        part = {**self._part, "text": whole}
        message: dict[str, Any] = {"type": "message", "id": self._item_id, "status": "completed"}
        message |= {"role": "assistant", "content": [part]}
        frames = [
            self._event("response.output_text.done", **self._at(text=whole, logprobs=[])),
            self._event("response.content_part.done", **self._at(part=part)),
            self._event("response.output_item.done", output_index=0, item=message),
        ]
        calls = [item for item in complete["output"] if item["type"] == "function_call"]
        for n, call in enumerate(calls, start=1):
            where = {"item_id": call["id"], "output_index": n}
            frames += [
                self._event(
                    "response.output_item.added", output_index=n, item={**call, "status": "in_progress"}
                ),
                self._event("response.function_call_arguments.delta", **where, delta=call["arguments"]),
                self._event("response.function_call_arguments.done", **where, arguments=call["arguments"]),
                self._event("response.output_item.done", output_index=n, item=call),
            ]
        complete["output"] = [message, *calls]
        final = "response.completed" if complete["status"] == "completed" else "response.incomplete"
        return [*frames, self._event(final, response=complete)]

    def failed(self, detail: str) -> list[bytes]:
        failed = _response(None, self._body, self._created, "failed", self._response_id)
        failed["error"] = {"code": "server_error", "message": detail}
        return [self._event("response.failed", response=failed)]
