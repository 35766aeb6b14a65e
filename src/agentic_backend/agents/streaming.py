"""A streamed agent query as Server-Sent Events.

The query runs in a task of its own and reports through ``QueryStream`` (the service's ``QueryEvents``):

    event: start    {"request_id", "agent_type", "provider", "model"}    once the query is admitted
    event: delta    {"text"}                                             answer text as the model writes it
    event: step     {"kind", "name", "detail", "input_tokens", "output_tokens"}   each model or tool step
    event: done     the QueryResponse: answer, usage, cost, stop reason, request id
    event: error    {"error", "detail", "request_id"}                    a failure after the start

The HTTP status is decided before the stream starts: the route waits for ``start``, so a refused query
(rate limit, budget, unknown session) is still a plain JSON 4xx. A comment (``: keep-alive``) goes out
whenever nothing else has for ``AGENTIC_STREAM_KEEPALIVE_SECONDS``, so proxies do not cut a stream during
a long tool step. If the client goes away, the query's task is cancelled: the model call stops, the
tokens it consumed are charged and written to the ledger (status ``cancelled``), and the HTTP metric
counts 499.

Time to first token and time per output token of the answers, by agent type, are measured here, as the
client receives them (tool steps included in the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi.responses import StreamingResponse

from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.runtime import ASKED_NOTHING, QueryOptions, Step
from agentic_backend.agents.schemas import QueryRequest, QueryResponse
from agentic_backend.agents.service import AgentService
from agentic_backend.core.errors import AppError
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Message, estimate_tokens

logger = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"
# One event of such a stream, as OpenAPI 3.1 describes a text/event-stream response (3.2's itemSchema):
# its name and its data (a JSON document; the OpenAI face's last one is ``[DONE]``, as OpenAI's is).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "The event's name (none on the OpenAI face)."},
        "data": {"type": "string", "description": "A JSON document."},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: every client ignores it, proxies see traffic
_BUFFER = 256  # events held for a slow client before the model's stream waits for it
_CANCEL_SECONDS = 10.0  # how long a cancelled query may take to settle and write its ledger row

Event = tuple[str, dict[str, Any]]


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    """A stream of Server-Sent Events, unbuffered by proxies (``X-Accel-Buffering``: nginx)."""
    return StreamingResponse(
        frames, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


class QueryStream:
    """Runs one query and turns what it reports into SSE frames."""

    def __init__(
        self,
        service: AgentService,
        principal: Principal,
        agent_type: str,
        request: QueryRequest,
        *,
        keepalive_seconds: float,
        conversation: list[Message] | None = None,
        options: QueryOptions = ASKED_NOTHING,
        on_done: Callable[[QueryResponse], object] | None = None,
    ) -> None:
        self._on_done = on_done
        self._recorder = service.recorder
        self._keepalive = keepalive_seconds
        self._send: MemoryObjectSendStream[Event]
        self._receive: MemoryObjectReceiveStream[Event]
        self._send, self._receive = anyio.create_memory_object_stream[Event](_BUFFER)
        self._started_at = time.monotonic()
        self._agent: AgentType | None = None
        self._first_text: float | None = None
        self._last_text = 0.0
        self._text: list[str] = []
        self._error: BaseException | None = None
        self._request_id = ""
        self._task = asyncio.create_task(
            self._run(service, principal, agent_type, request, conversation, options)
        )

    async def _run(
        self,
        service: AgentService,
        principal: Principal,
        agent_type: str,
        request: QueryRequest,
        conversation: list[Message] | None,
        options: QueryOptions,
    ) -> None:
        async with self._send:
            try:
                response = await service.query(
                    principal, agent_type, request, events=self, conversation=conversation, options=options
                )
            except Exception as exc:
                self._error = exc
                if isinstance(exc, AppError):
                    body = {"error": type(exc).__name__, "detail": exc.detail, "request_id": self._request_id}
                else:
                    logger.exception("streamed query %s failed", self._request_id)
                    body = {
                        "error": "InternalServerError",
                        "detail": "The query failed; quote the request id when reporting it.",
                        "request_id": self._request_id,
                    }
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._send.send(("error", body))
                return
            self._observe_answer()
            if self._on_done is not None:
                self._on_done(response)
            await self._send.send(("done", response.model_dump(mode="json")))

    # -- the service's QueryEvents ------------------------------------------------------------------

    async def start(self, request_id: str, agent: AgentType) -> None:
        self._request_id, self._agent = request_id, agent
        data = {"request_id": request_id, "agent_type": agent.name, "provider": agent.provider}
        await self._send.send(("start", {**data, "model": agent.model}))

    async def text(self, piece: str) -> None:
        now = time.monotonic()
        if self._first_text is None:
            self._first_text = now
        self._last_text = now
        self._text.append(piece)
        await self._send.send(("delta", {"text": piece}))

    async def step(self, step: Step) -> None:
        data = {
            "kind": step.kind,
            "name": step.name,
            "detail": step.detail,
            "input_tokens": step.input_tokens,
            "output_tokens": step.output_tokens,
        }
        await self._send.send(("step", data))

    def _observe_answer(self) -> None:
        if self._agent is None or self._first_text is None:
            return
        tokens = estimate_tokens("".join(self._text))
        per_token = (self._last_text - self._first_text) / (tokens - 1) if tokens > 1 else None
        self._recorder.answer_streamed(self._agent, self._first_text - self._started_at, per_token)

    # -- the route's side -------------------------------------------------------------------------

    async def first(self) -> Event:
        """The first event, once the query is admitted; raises what refused it otherwise (the route then
        answers a plain JSON error with its status)."""
        try:
            event = await self._receive.receive()
        except anyio.EndOfStream:  # ended without a word: it can only have failed
            await self.close()
            raise RuntimeError("the streamed query ended without an answer") from None
        except BaseException:  # the request was cancelled while the query was being admitted
            await self.close()
            raise
        if event[0] == "error" and not self._request_id and self._error is not None:
            await self.close()
            raise self._error
        return event

    async def items(self, first: Event) -> AsyncIterator[Event | None]:
        """The events, starting with ``first``, and None for each keep-alive; cancels the query if the
        client goes away (the response stops iterating)."""
        try:
            yield first
            while True:
                with anyio.move_on_after(self._keepalive) as waited:
                    try:
                        event = await self._receive.receive()
                    except anyio.EndOfStream:
                        return
                if waited.cancelled_caught:
                    yield None
                    continue
                yield event
        finally:
            await self.close()

    async def frames(self, first: Event) -> AsyncIterator[bytes]:
        """The native API's SSE frames."""
        try:
            async for event in self.items(first):
                yield sse(*event) if event is not None else KEEPALIVE
        finally:
            await self.close()  # also when the client left while this generator was between events

    async def close(self) -> None:
        """Stop the query if it still runs, and wait (shielded) until it has settled and written its row."""
        with anyio.CancelScope(shield=True):
            if not self._task.done():
                self._task.cancel()
            with anyio.move_on_after(_CANCEL_SECONDS), contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._receive.close()
