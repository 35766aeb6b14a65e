"""Clients this project did not write, over real HTTP against a live service: the official ``openai`` SDK
(tool round trip, structured output through ``parse``), LangChain's ``ChatOpenAI`` (invoke, stream,
``bind_tools`` round trip, ``with_structured_output`` in its default mode) and the openai-agents SDK
running an agent with a function tool against an agent type. Each error arrives as the client's own
exception class."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.integration.harness import Service

pytestmark = pytest.mark.integration
set_tracing_disabled(True)  # the agents SDK would send its traces to OpenAI


class City(BaseModel):
    name: str
    population: int
    capital: bool


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(tmp_path_factory.mktemp("clients"))
    yield running
    running.stop()


def user_key(service: Service, name: str, **limits: object) -> str:
    created = httpx.post(
        f"{service.url}/api/v1/keys", json={"name": name, "role": "user", **limits}, headers=service.headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def test_the_openai_sdk_tool_round_trip_and_parse(service: Service) -> None:
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key=user_key(service, "sdk"), max_retries=0)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    messages: list[dict[str, object]] = [{"role": "user", "content": "call get_weather for Lyon"}]
    first = sdk.chat.completions.create(model="assistant", messages=messages, tools=[weather])  # type: ignore[arg-type, list-item]
    assert first.choices[0].finish_reason == "tool_calls"
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": "21 C, light rain"}]
    second = sdk.chat.completions.create(model="assistant", messages=messages, tools=[weather])  # type: ignore[arg-type, list-item]
    assert "21 C, light rain" in (second.choices[0].message.content or "")

    parsed = sdk.chat.completions.parse(
        model="assistant", messages=[{"role": "user", "content": "a city, please"}], response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City)
    assert city.population >= 1
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}], top_p=3)
    assert bad.value.param == "top_p"


def test_langchain_chat_openai(service: Service) -> None:
    key = user_key(service, "langchain")
    chat = ChatOpenAI(model="assistant", base_url=f"{service.url}/v1", api_key=key, max_retries=0)  # type: ignore[arg-type]
    answer = chat.invoke("What does the cache save?")
    assert isinstance(answer.content, str)
    assert answer.content
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] > 0
    pieces = [chunk.content for chunk in chat.stream("Stream me an answer about budgets")]
    assert "".join(str(p) for p in pieces)

    @tool
    def lookup_order(order_id: str) -> str:
        """The status of an order."""
        return f"order {order_id} shipped yesterday"

    with_tools = chat.bind_tools([lookup_order])
    question = HumanMessage("please lookup_order 42")
    asked = with_tools.invoke([question])
    assert asked.tool_calls  # type: ignore[attr-defined]
    call = asked.tool_calls[0]  # type: ignore[attr-defined]
    assert call["name"] == "lookup_order"
    result = lookup_order.invoke(call["args"])
    final = with_tools.invoke([question, asked, ToolMessage(result, tool_call_id=call["id"])])
    assert "shipped yesterday" in str(final.content)

    structured = chat.with_structured_output(City)  # its default mode: a JSON schema response format
    city = structured.invoke("Name a city")
    assert isinstance(city, City)

    broke = ChatOpenAI(
        model="assistant",
        base_url=f"{service.url}/v1",
        api_key=user_key(service, "langchain-broke", monthly_budget_dollars=0),  # type: ignore[arg-type]
        max_retries=0,
    )
    with pytest.raises(openai.RateLimitError) as spent:
        broke.invoke("anything")
    assert spent.value.code == "insufficient_quota"
    with pytest.raises(openai.NotFoundError):
        ChatOpenAI(model="gpt-9", base_url=f"{service.url}/v1", api_key=key, max_retries=0).invoke("x")  # type: ignore[arg-type]


def test_the_openai_sdk_responses_api(service: Service) -> None:
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key=user_key(service, "responses"), max_retries=0)
    first = sdk.responses.create(model="assistant", input="Remember: the code word is teal.")
    assert first.status == "completed"
    assert first.output_text
    assert first.usage is not None
    assert first.usage.output_tokens > 0
    follow = sdk.responses.create(model="assistant", input="What was it?", previous_response_id=first.id)
    assert follow.previous_response_id == first.id
    with sdk.responses.stream(model="assistant", input="Stream about the ledger") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.output_text
    parsed = sdk.responses.parse(model="assistant", input="a city", text_format=City)
    assert isinstance(parsed.output_parsed, City)
    with pytest.raises(openai.NotFoundError) as gone:
        sdk.responses.create(model="assistant", input="x", previous_response_id="resp_nope")
    assert gone.value.param == "previous_response_id"


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_an_openai_agents_sdk_agent_with_a_function_tool(service: Service, api: str) -> None:
    calls: list[str] = []

    @function_tool
    def get_stock_price(symbol: str) -> str:
        """The latest price of a stock."""
        calls.append(symbol)
        return f"{symbol} trades at 123.45"

    async def run() -> str:
        key = user_key(service, f"agents-sdk-{api}")
        client = openai.AsyncOpenAI(base_url=f"{service.url}/v1", api_key=key)
        agent = Agent(
            name="analyst",
            instructions="Answer with the tool's figures.",
            model=(
                OpenAIChatCompletionsModel(model="assistant", openai_client=client)
                if api == "chat_completions"
                else OpenAIResponsesModel(model="assistant", openai_client=client)  # the SDK's default API
            ),
            tools=[get_stock_price],
        )
        result = await Runner.run(agent, "use get_stock_price for ACME")
        await client.close()
        return str(result.final_output)

    final = asyncio.run(run())
    assert calls  # the SDK ran its tool because the model (through the service) called it
    assert "123.45" in final


def test_the_litellm_sdk_as_a_client(service: Service) -> None:
    import litellm  # 7 s to import: only here

    key = user_key(service, "litellm-sdk")
    where = {"api_base": f"{service.url}/v1", "api_key": key, "num_retries": 0}
    answer = litellm.completion(
        model="openai/assistant", messages=[{"role": "user", "content": "hello"}], **where
    )
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens > 0
    pieces = litellm.completion(
        model="openai/researcher", messages=[{"role": "user", "content": "stream"}], stream=True, **where
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in pieces)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    asked = litellm.completion(
        model="openai/assistant",
        messages=[{"role": "user", "content": "get_weather for Nice"}],
        tools=[weather],
        **where,
    )
    assert asked.choices[0].message.tool_calls[0].function.name == "get_weather"
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(
            model="openai/assistant", messages=[{"role": "user", "content": "x"}], temperature=9, **where
        )
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(model="openai/gpt-9", messages=[{"role": "user", "content": "x"}], **where)
    broke = {**where, "api_key": user_key(service, "litellm-broke", monthly_budget_dollars=0)}
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(model="openai/assistant", messages=[{"role": "user", "content": "x"}], **broke)
