"""OpenAI's Responses API on the same path as every query: text and item input, instructions, stored
conversations (``previous_response_id``, the key's own only), caller function tools with
``function_call_output`` to continue, ``max_output_tokens``, ``text.format``, the typed streaming events,
and what is not supported refused with OpenAI's error shape naming the param."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("app")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def create(client: httpx.AsyncClient, key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return await client.post("/v1/responses", json={"model": "assistant", **body}, headers=headers)


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


async def test_a_text_input_answers_with_a_message_and_usage(client: httpx.AsyncClient) -> None:
    response = await create(client, input="What does the cache save?", instructions="Be brief.")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "response"
    assert body["id"].startswith("resp_")
    assert body["status"] == "completed"
    assert body["model"] == "assistant"
    assert text_of(body)
    usage = body["usage"]
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert response.headers["x-agentic-cache"] == "miss"


async def test_previous_response_id_continues_the_keys_own_conversation(client: httpx.AsyncClient) -> None:
    first = (await create(client, input="Remember the word teal.")).json()
    fresh = (await create(client, input="Which word?")).json()
    follow = (await create(client, input="Which word?", previous_response_id=first["id"])).json()
    assert follow["previous_response_id"] == first["id"]
    assert follow["usage"]["input_tokens"] > fresh["usage"]["input_tokens"]  # the history went with it
    created = (await client.post("/api/v1/keys", json={"name": "stranger", "role": "user"})).json()
    stolen = await create(client, key=created["key"], input="Which word?", previous_response_id=first["id"])
    assert stolen.status_code == 404
    assert stolen.json()["error"]["param"] == "previous_response_id"
    unstored = (await create(client, input="Forget this.", store=False)).json()
    missing = await create(client, input="And?", previous_response_id=unstored["id"])
    assert missing.status_code == 404


async def test_a_function_tool_round_trip(client: httpx.AsyncClient) -> None:
    asked = (await create(client, input="use get_weather for Rome", tools=[WEATHER])).json()
    (call,) = [item for item in asked["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather"
    assert "city" in json.loads(call["arguments"])
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "25 C, clear"}
    answered = (
        await create(client, input=[output], previous_response_id=asked["id"], tools=[WEATHER])
    ).json()
    assert answered["status"] == "completed"
    assert "25 C, clear" in text_of(answered)
    # The same without a stored conversation: the items carry it.
    items = [{"role": "user", "content": "use get_weather for Rome"}, call, output]
    inline = (await create(client, input=items, tools=[WEATHER])).json()
    assert "25 C, clear" in text_of(inline)


async def test_max_output_tokens_and_text_format(client: httpx.AsyncClient) -> None:
    cut = (await create(client, input="A long story please", max_output_tokens=16)).json()
    long = (await create(client, input="A long story please (whole)")).json()
    assert long["usage"]["output_tokens"] > 16  # sim's answer to it is longer than the cap
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["usage"]["output_tokens"] <= 16
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"format": {"type": "json_schema", "name": "N", "schema": schema, "strict": True}}
    shaped = (await create(client, input="a number", text=fmt)).json()
    assert isinstance(json.loads(text_of(shaped))["n"], int)


async def test_streamed_events_in_order(client: httpx.AsyncClient) -> None:
    payload = {"model": "assistant", "input": "Stream about budgets", "stream": True}
    async with client.stream("POST", "/v1/responses", json=payload) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas
    assert deltas == text_of(events[-1]["response"])
    assert events[-1]["response"]["usage"]["output_tokens"] > 0


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "x", "include": ["reasoning.encrypted_content"]}, "include"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "frobnicate": 1}, "frobnicate"),
    ({"input": "x", "temperature": 3}, "temperature"),
    ({"input": "x", "max_output_tokens": 5}, "max_output_tokens"),
    ({"input": [{"type": "input_image", "image_url": "x"}]}, "input[0]"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0]",
    ),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "r"}]}, "input"),
    ({"input": "x", "tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
    ({"input": "x", "truncation": "auto"}, "truncation"),
    ({"input": "x", "model": "gpt-9"}, "model"),
]


@pytest.mark.parametrize(("body", "param"), REFUSED, ids=[p for _, p in REFUSED])
async def test_what_is_not_supported_is_refused_naming_it(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await client.post("/v1/responses", json={"model": "assistant", **body})
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
