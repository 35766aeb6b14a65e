"""``sim``: a provider that answers without a network, for offline use, demos and load tests.

Deterministic: the same conversation gets the same answer, token counts and tool calls. Token counts follow
the usual ~4 characters per token; latency, a failure rate and tool-call behaviour are settings. A query can
force an error class with a directive in its text, e.g. ``#fail:rate_limit`` (or timeout, auth, server,
bad_response), which the traffic generator uses to exercise error paths.

It honours a call's options as a model does, deterministically: the answer stops before the first ``stop``
sequence, is cut at ``max_tokens`` (``truncated``), changes with ``seed``, and with a ``response_format`` is
JSON (an object, or a value valid for the caller's JSON schema). Temperature, top_p and the penalties
change nothing: the sim has no randomness to shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

from agentic_backend.llm.base import (
    DEFAULT_MAX_TOKENS,
    NO_OPTIONS,
    CallOptions,
    Completion,
    Message,
    TextSink,
    ToolCall,
    ToolSpec,
)
from agentic_backend.llm.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)

_FAIL = re.compile(r"#fail:(timeout|rate_limit|auth|server|bad_response)")
# Runs of arithmetic characters; a single character class keeps the search linear in the query's length
# (nested quantifiers over overlapping classes backtrack badly on a long run of digits and spaces).
_ARITHMETIC_RUN = re.compile(r"[-+*/().\d\s%^]+")
_OPERATOR_BETWEEN_DIGITS = re.compile(r"\d[\s)]*[-+*/%^]")


def find_expression(text: str) -> str | None:
    """The first run of arithmetic characters holding an operator after a digit and a digit after it."""
    for run in _ARITHMETIC_RUN.finditer(text):
        candidate = run.group(0).strip()
        if candidate[-1:] in tuple("0123456789)") and _OPERATOR_BETWEEN_DIGITS.search(candidate):
            return candidate
    return None


_SENTENCES = (
    "Here is what I found.",
    "The short answer is yes, with two caveats.",
    "Latency depends mostly on the model and the number of tool calls.",
    "Caching identical requests removes their cost entirely.",
    "Budgets are enforced per API key and per month.",
    "Each step of an agent is one model call.",
    "Metrics are exported for Prometheus at /api/v1/monitoring/metrics.",
    "I would start with the dashboard's request rate and error ratio.",
)
_ERRORS: dict[str, type[ProviderError]] = {
    "timeout": ProviderTimeout,
    "rate_limit": ProviderRateLimited,
    "auth": ProviderAuthError,
    "server": ProviderServerError,
    "bad_response": ProviderBadResponse,
}


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def token_pieces(text: str) -> list[str]:
    """``text`` in the pieces a streaming model sends: about a token (4 characters) each."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big")


class SimProvider:
    name = "sim"

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        failure_rate: float = 0.0,
        tool_calls: bool = True,
        tokens_per_second: float = 0.0,
    ) -> None:
        self.latency = latency_ms / 1000
        self.failure_rate = failure_rate
        self.tool_calls = tool_calls
        self.token_interval = 1 / tokens_per_second if tokens_per_second else 0.0  # 0: as fast as it can

    async def complete(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        timeout: float,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        on_text: TextSink | None = None,
        options: CallOptions = NO_OPTIONS,
    ) -> Completion:
        user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        forced = _FAIL.search(user_text)
        if forced and messages[-1].role == "user":
            if forced.group(1) == "timeout":
                await asyncio.sleep(min(timeout, 0.05))
            raise _ERRORS[forced.group(1)](
                f"sim: simulated {forced.group(1).replace('_', ' ')} from the provider"
            )
        if self.latency:
            if self.latency > timeout:
                await asyncio.sleep(timeout)
                raise ProviderTimeout(f"sim: no answer within {timeout:.1f} s")
            await asyncio.sleep(self.latency)
        conversation = json.dumps([(m.role, m.content) for m in messages])
        if self.failure_rate and (_digest("fail", conversation) % 10_000) < self.failure_rate * 10_000:
            raise ProviderServerError("sim: simulated server error (AGENTIC_SIM_FAILURE_RATE)")
        input_tokens = sum(count_tokens(m.content) + 4 for m in messages) + sum(
            count_tokens(t.description) + 10 for t in tools
        )
        last = messages[-1]
        call = _caller_tool_call(last, tools, options, conversation)
        if call is None and self.tool_calls and options.tool_choice != "none":
            call = self._tool_call(last, tools, conversation)
        if call is not None:
            output = count_tokens(json.dumps(call.arguments)) + 8
            return Completion(None, (call,), input_tokens, output, model)
        seed = "" if options.seed is None else str(options.seed)
        schema = options.json_schema()
        if schema is not None:
            answer = json.dumps(schema_instance(schema, self._answer(model, user_text + seed, last)))
        else:
            answer = self._answer(model, user_text + seed, last)
        for stop in options.stop:  # the model stops before the first stop sequence it would write
            if stop and stop in answer:
                answer = answer[: answer.index(stop)]
        truncated = count_tokens(answer) > max_tokens
        if truncated:  # a model stops at max_tokens
            answer = answer[: max_tokens * 4]
        if on_text is not None:
            await self._stream(answer, on_text)
        reasoning = _REASONING.get(options.reasoning_effort or "none", 0)
        output = count_tokens(answer) + reasoning
        read, write = _prompt_cache(model, messages, input_tokens)
        return Completion(answer, (), input_tokens, output, model, truncated, read, write, reasoning)

    async def _stream(self, answer: str, on_text: TextSink) -> None:
        """Hand ``answer`` over a token at a time, at AGENTIC_SIM_TOKENS_PER_SECOND."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, piece in enumerate(token_pieces(answer)):
            if self.token_interval:
                await asyncio.sleep(max(0.0, start + n * self.token_interval - loop.time()))
            await on_text(piece)

    @staticmethod
    def _tool_call(last: Message, tools: list[ToolSpec], conversation: str) -> ToolCall | None:
        if last.role != "user":
            return None
        names = {t.name for t in tools}
        call_id = f"call_{_digest(conversation) % 10**12:012d}"
        expression = find_expression(last.content) if "calculate" in names else None
        if expression:
            return ToolCall(call_id, "calculate", {"expression": expression})
        if "search_documents" in names:
            return ToolCall(call_id, "search_documents", {"query": last.content[:200]})
        return None

    @staticmethod
    def _answer(model: str, user_text: str, last: Message) -> str:
        if last.role == "tool":
            return f"According to the {model} run of the tool: {last.content[:400]}"
        seed = _digest(model, user_text)
        count = 2 + seed % 4
        picked = [_SENTENCES[(seed >> (4 * i)) % len(_SENTENCES)] for i in range(count)]
        return " ".join(picked)

    async def close(self) -> None:
        return None


# Tokens a reasoning effort spends thinking before it answers (part of the output, never shown).
_REASONING = {"none": 0, "minimal": 8, "low": 16, "medium": 64, "high": 256, "xhigh": 512}
_CACHE_BLOCK = 64  # providers cache a prompt's prefix in blocks


def _prompt_cache(model: str, messages: list[Message], input_tokens: int) -> tuple[int, int]:
    """The input read from the prompt cache (the conversation before its last turn, in whole blocks: a
    provider has seen that prefix) and written to it (``claude-*`` models: the rest, as Anthropic's
    cache breakpoints write it)."""
    prefix = sum(count_tokens(m.content) + 4 for m in messages[:-1])
    read = prefix // _CACHE_BLOCK * _CACHE_BLOCK
    write = (input_tokens - read) // _CACHE_BLOCK * _CACHE_BLOCK if model.startswith("claude") else 0
    return read, write


# The tools an agent type has of its own: any other tool in a call is a caller's (the OpenAI face's tools).
_OWN_TOOLS = frozenset({"calculate", "search_documents"})


def _caller_tool_call(
    last: Message, tools: list[ToolSpec], options: CallOptions, conversation: str
) -> ToolCall | None:
    """A caller's tool the model calls: the one ``tool_choice`` names, the first when it is ``required``,
    or one the user's message names; arguments valid for its JSON schema. Not after a tool's result."""
    callers = [t for t in tools if t.name not in _OWN_TOOLS]
    if last.role != "user" or not callers or options.tool_choice == "none":
        return None
    chosen = next((t for t in callers if t.name == options.tool_choice), None)
    if chosen is None and options.tool_choice == "required":
        chosen = next((t for t in callers if t.name in last.content), callers[0])
    if chosen is None:
        chosen = next((t for t in callers if t.name in last.content), None)
    if chosen is None:
        return None
    arguments = schema_instance(chosen.parameters or {"type": "object"}, last.content[:200])
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return ToolCall(f"call_{_digest(conversation, chosen.name) % 10**12:012d}", chosen.name, arguments)


def schema_instance(
    schema: dict[str, Any], text: str, defs: dict[str, Any] | None = None, depth: int = 0
) -> Any:
    """A value valid for the JSON schema ``schema``, strings filled from ``text``: what a model in
    structured-output mode answers. Written here because the libraries that do it (hypothesis-jsonschema)
    draw random values and pull in a test framework; this covers what pydantic and the SDKs' ``parse``
    emit: objects with required properties, arrays, enums, consts, unions, ``$ref`` to ``$defs``, bounds."""
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if depth > 20:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return schema_instance(defs[ref.rsplit("/", 1)[-1]], text, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(union, ()) if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return schema_instance(options[0], text, defs, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties and schema.get("additionalProperties", True) is not False:
            return {"answer": text}
        return {
            name: schema_instance(sub, text, defs, depth + 1)
            for name, sub in properties.items()
            if isinstance(sub, dict)
        }
    if kind == "array":
        items = schema.get("items")
        items = items if isinstance(items, dict) else {}
        return [
            schema_instance(items, text, defs, depth + 1) for _ in range(max(1, schema.get("minItems", 1)))
        ]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(low + (1 if "exclusiveMinimum" in schema else 0), 1)
        value = min(value, schema.get("maximum", value))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    least, most = schema.get("minLength", 0), schema.get("maxLength")
    value = text if most is None else text[:most]
    return value + "x" * max(0, least - len(value))
