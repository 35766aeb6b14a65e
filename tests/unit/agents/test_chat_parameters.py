"""The OpenAI face checks every chat-completion parameter as OpenAI does and answers as OpenAI does: a wrong
type, a value out of range, an unknown parameter or one the service does not do is a 400
``invalid_request_error`` naming the ``param``; what it takes it honours (the token cap, stop sequences,
the response format), and nothing it is sent becomes a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("app")

BASE: dict[str, Any] = {
    "model": "assistant",
    "messages": [{"role": "user", "content": "Tell me about caching"}],
}


def body(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


async def post(
    client: httpx.AsyncClient, payload: dict[str, Any] | bytes, key: str | None = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(payload, bytes):
        headers["content-type"] = "application/json"
        return await client.post("/v1/chat/completions", content=payload, headers=headers)
    return await client.post("/v1/chat/completions", json=payload, headers=headers)


# (the request, the param OpenAI names, its code): a class of mistake each, as OpenAI answers it.
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    (body(temperature=5), "temperature", "decimal_above_max_value"),
    (body(temperature=-0.1), "temperature", "decimal_below_min_value"),
    (body(temperature="1"), "temperature", "invalid_type"),
    (body(top_p=2), "top_p", "decimal_above_max_value"),
    (body(frequency_penalty=-3), "frequency_penalty", "decimal_below_min_value"),
    (body(presence_penalty=2.5), "presence_penalty", "decimal_above_max_value"),
    (body(max_tokens=-1), "max_tokens", "integer_below_min_value"),
    (body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    (body(max_completion_tokens=1.5), "max_completion_tokens", "invalid_type"),
    (body(max_tokens=10, max_completion_tokens=10), "max_tokens", "bad_request"),
    (body(stream="yes"), "stream", "invalid_type"),
    (body(seed=1.5), "seed", "invalid_type"),
    (body(seed="7"), "seed", "invalid_type"),
    (body(seed=True), "seed", "invalid_type"),
    (body(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    (body(stop=7), "stop", "invalid_type"),
    (body(n=2), "n", "bad_request"),
    (body(n=0), "n", "integer_below_min_value"),
    (body(logprobs=True), "logprobs", "bad_request"),
    (body(top_logprobs=30), "top_logprobs", "integer_above_max_value"),
    (body(logit_bias={"50256": -100}), "logit_bias", "bad_request"),
    (body(modalities=["text", "audio"]), "modalities", "bad_request"),
    (body(store=True), "store", "bad_request"),
    (body(service_tier="flex"), "service_tier", "bad_request"),
    (body(stream_options={"include_usage": True}), "stream_options", "bad_request"),
    (body(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    (
        body(response_format={"type": "json_schema", "json_schema": {"name": "bad name!"}}),
        "response_format.json_schema.name",
        "invalid_value",
    ),
    (body(metadata={f"k{i}": "v" for i in range(17)}), "metadata", "object_above_max_properties"),
    (body(metadata={"team": "x" * 513}), "metadata.team", "string_above_max_length"),
    (body(user=5), "user", "invalid_type"),
    (body(reasoning_effort="extreme"), "reasoning_effort", "invalid_value"),
    (body(frobnicate=True), "frobnicate", "unknown_parameter"),
    ({"model": "assistant"}, "messages", "missing_required_parameter"),
    (body(messages=[]), "messages", "array_below_min_length"),
    (body(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role", "invalid_value"),
    (
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages[0].content[0].type",
        "invalid_value",
    ),
]


@pytest.mark.parametrize(("payload", "param", "code"), REFUSED, ids=[f"{p}:{c}" for _, p, c in REFUSED])
async def test_a_bad_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str, code: str
) -> None:
    response = await post(client, payload)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert param.split(".")[0].split("[")[0] in error["message"] or code == "bad_request"


async def test_numbers_json_cannot_hold_are_refused_not_500(client: httpx.AsyncClient) -> None:
    for raw in (b"1e309", b"-1e309", b"NaN", b"Infinity"):
        payload = json.dumps(BASE).encode()[:-1] + b', "temperature": ' + raw + b"}"
        response = await post(client, payload)
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["error"]["param"] == "temperature"


async def test_an_integer_may_be_written_as_json_writes_it(client: httpx.AsyncClient) -> None:
    response = await post(client, body(max_tokens=16.0, seed=7.0))  # JSON Schema's integer takes 16.0
    assert response.status_code == 200, response.text


async def test_an_unknown_model_is_model_not_found(client: httpx.AsyncClient) -> None:
    response = await post(client, body(model="gpt-9"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["param"] == "model"


async def test_max_tokens_caps_the_answer_and_says_length(client: httpx.AsyncClient) -> None:
    free = (await post(client, body(messages=[{"role": "user", "content": "a long answer please"}]))).json()
    assert free["usage"]["completion_tokens"] > 3
    for field in ("max_tokens", "max_completion_tokens"):
        query = {"role": "user", "content": f"a long answer please ({field})"}
        capped = (await post(client, body(messages=[query], **{field: 3}))).json()
        assert capped["usage"]["completion_tokens"] <= 3
        assert capped["choices"][0]["finish_reason"] == "length"
        assert len(capped["choices"][0]["message"]["content"]) <= 12


async def test_stop_ends_the_answer_before_the_sequence(client: httpx.AsyncClient) -> None:
    free = (await post(client, body())).json()["choices"][0]["message"]["content"]
    word = free.split()[2]
    stopped = (await post(client, body(stop=[word]))).json()
    text = stopped["choices"][0]["message"]["content"]
    assert word not in text
    assert free.startswith(text)
    assert stopped["choices"][0]["finish_reason"] == "stop"


async def test_json_object_and_json_schema_answers_parse(client: httpx.AsyncClient) -> None:
    asked = await post(client, body(response_format={"type": "json_object"}))
    assert isinstance(json.loads(asked.json()["choices"][0]["message"]["content"]), dict)
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "population": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "kind": {"enum": ["capital", "town"]},
        },
        "required": ["city", "population", "tags", "kind"],
        "additionalProperties": False,
        "$defs": {
            "Tag": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        },
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "City", "schema": schema, "strict": True}}
    answer = json.loads(
        (await post(client, body(response_format=fmt))).json()["choices"][0]["message"]["content"]
    )
    assert set(answer) == {"city", "population", "tags", "kind"}
    assert isinstance(answer["population"], int)
    assert answer["population"] >= 1
    assert answer["kind"] == "capital"
    assert isinstance(answer["tags"][0]["name"], str)


async def test_a_cached_answer_reports_the_tokens_it_holds_at_no_cost(client: httpx.AsyncClient) -> None:
    first = await post(client, body(messages=[{"role": "user", "content": "cache me"}]))
    again = await post(client, body(messages=[{"role": "user", "content": "cache me"}]))
    assert first.headers["x-agentic-cache"] == "miss"
    assert float(first.headers["x-agentic-cost-dollars"]) > 0
    assert again.headers["x-agentic-cache"] == "hit"
    assert float(again.headers["x-agentic-cost-dollars"]) == 0
    usage, cached = first.json()["usage"], again.json()["usage"]
    assert cached["prompt_tokens"] == usage["prompt_tokens"] > 0
    assert cached["completion_tokens"] == usage["completion_tokens"] > 0
    assert cached["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    # Another ask of the same text is another answer, not the cached one.
    capped = await post(client, body(messages=[{"role": "user", "content": "cache me"}], max_tokens=2))
    assert capped.headers["x-agentic-cache"] == "miss"


async def test_a_spent_budget_is_openais_quota_error(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/keys", json={"name": "tiny", "role": "user", "monthly_budget_dollars": 0.0001}
    )
    key = created.json()["key"]
    answers = [
        await post(client, body(messages=[{"role": "user", "content": f"q{i}"}]), key) for i in range(40)
    ]
    refused = [r for r in answers if r.status_code != 200]
    assert refused, "a $0.0001 budget never ran out"
    error = refused[-1].json()["error"]
    assert refused[-1].status_code == 429
    assert error["type"] == error["code"] == "insufficient_quota"
    assert "$0.0001 " in error["message"]
    native = await client.post(
        "/api/v1/agents/assistant/query", json={"query": "native"}, headers={"authorization": f"Bearer {key}"}
    )
    assert native.status_code == 402
    assert "$0.0001 " in native.json()["detail"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


async def test_a_callers_tool_round_trip(client: httpx.AsyncClient) -> None:
    question = {"role": "user", "content": "use get_weather for Paris"}
    first = (await post(client, body(messages=[question], tools=[WEATHER]))).json()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] == "celsius"
    result = {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"}
    second = (
        await post(client, body(messages=[question, choice["message"], result], tools=[WEATHER]))
    ).json()
    assert second["choices"][0]["finish_reason"] == "stop"
    assert "18 degrees and sunny" in second["choices"][0]["message"]["content"]
    ledger = (await client.get("/api/v1/usage", params={"limit": 2})).json()["records"]
    assert [r["status"] for r in ledger] == ["success", "success"]  # both turns counted and charged
    assert all(r["cost_dollars"] > 0 for r in ledger)


async def test_tool_choice_is_honoured(client: httpx.AsyncClient) -> None:
    plain = {"role": "user", "content": "hello there"}
    unasked = (await post(client, body(messages=[plain], tools=[WEATHER]))).json()
    assert unasked["choices"][0]["finish_reason"] == "stop"  # auto: the message names no tool
    required = (await post(client, body(messages=[plain], tools=[WEATHER], tool_choice="required"))).json()
    assert required["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    named = {"type": "function", "function": {"name": "get_weather"}}
    chosen = (await post(client, body(messages=[plain], tools=[WEATHER], tool_choice=named))).json()
    assert chosen["choices"][0]["finish_reason"] == "tool_calls"
    named_in_text = {"role": "user", "content": "get_weather please"}
    none = (await post(client, body(messages=[named_in_text], tools=[WEATHER], tool_choice="none"))).json()
    assert none["choices"][0]["finish_reason"] == "stop"


async def test_a_streamed_tool_call(client: httpx.AsyncClient) -> None:
    question = {"role": "user", "content": "stream get_weather for Oslo"}
    payload = body(messages=[question], tools=[WEATHER], stream=True)
    async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        lines = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    chunks = [json.loads(line[6:]) for line in lines]
    calls = [
        c for chunk in chunks for choice in chunk["choices"] for c in choice["delta"].get("tool_calls", [])
    ]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"])["unit"] == "celsius"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


TOOL_MISTAKES: list[tuple[dict[str, Any], str]] = [
    (
        body(tools=[{**WEATHER, "function": {**WEATHER["function"], "name": "calculate"}}]),
        "tools[0].function.name",
    ),
    (body(tools=[WEATHER, WEATHER]), "tools[1].function.name"),
    (body(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0].type"),
    (body(tool_choice={"type": "function", "function": {"name": "nope"}}, tools=[WEATHER]), "tool_choice"),
    (body(tool_choice="required"), "tool_choice"),
    (
        body(
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_x", "content": "r"},
            ]
        ),
        "messages[1].tool_call_id",
    ),
    (
        body(
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (body(messages=[{"role": "assistant", "content": "not the user's"}]), "messages[0].role"),
]


@pytest.mark.parametrize(("payload", "param"), TOOL_MISTAKES, ids=[p for _, p in TOOL_MISTAKES])
async def test_a_tool_mistake_is_a_400_naming_it(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str
) -> None:
    response = await post(client, payload)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
