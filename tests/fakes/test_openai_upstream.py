"""The fake upstream driven by the official SDK: chat, streaming, tool calls, structured output."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pydantic
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
from openai.types.chat.chat_completion_message_function_tool_call import Function

from tests.fakes import FakeOpenAI
from tests.fakes.conftest import API_KEY

USER: Any = [{"role": "user", "content": "hello there"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
TOOLS: Any = [WEATHER, TIME]
WEATHER_ARGS = {"city": "sample", "unit": "celsius"}


def user(content: Any) -> Any:
    """A one-message conversation (typed Any: the SDK's TypedDict params are not worth spelling out)."""
    return [{"role": "user", "content": content}]


def functions(completion: ChatCompletion) -> list[Function]:
    calls = completion.choices[0].message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c.function for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


async def collect(stream: openai.AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


async def test_plain_chat_echoes_and_counts_tokens(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.created == 1700000000
    assert completion.model == "gpt-4o"
    assert completion.system_fingerprint == "fp_f4ke0a1b2c"
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 3, 15)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    for name in ("requests", "tokens"):
        for kind in ("limit", "remaining", "reset"):
            assert raw.headers[f"x-ratelimit-{kind}-{name}"]


async def test_requests_are_recorded(up: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.5)
    recorded = up.last_request
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.json == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.5}
    assert up.requests_to("/v1/chat/completions") == [recorded]


async def test_n_choices_are_distinguishable(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="gpt-4o", messages=USER, n=3)
    assert [c.message.content for c in completion.choices] == [
        "echo: hello there",
        "echo1: hello there",
        "echo2: hello there",
    ]
    assert completion.usage is not None and completion.usage.completion_tokens == 9


async def test_max_tokens_truncates_with_length(client: openai.AsyncOpenAI) -> None:
    messages = user("one two three four")
    completion = await client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=3)
    assert completion.choices[0].message.content == "echo: one two"
    assert completion.choices[0].finish_reason == "length"
    newer = await client.chat.completions.create(model="gpt-4o", messages=messages, max_completion_tokens=2)
    assert newer.choices[0].message.content == "echo: one"


async def test_stop_sequence_cuts_the_answer(client: openai.AsyncOpenAI) -> None:
    messages = user("alpha beta gamma")
    completion = await client.chat.completions.create(model="gpt-4o", messages=messages, stop=[" gamma"])
    assert completion.choices[0].message.content == "echo: alpha beta"
    assert completion.choices[0].finish_reason == "stop"


async def test_image_parts_are_counted(client: openai.AsyncOpenAI) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    completion = await client.chat.completions.create(model="gpt-4o", messages=user(content))
    assert completion.choices[0].message.content == "echo: what is this (saw 1 image)"
    assert completion.usage is not None and completion.usage.prompt_tokens == 4 + 3 + 85


async def test_stream_without_usage(client: openai.AsyncOpenAI) -> None:
    messages = user("one two three")
    chunks = await collect(
        await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    )
    assert {(c.id, c.created, c.model, c.object, c.system_fingerprint) for c in chunks} == {
        (chunks[0].id, 1700000000, "gpt-4o", "chat.completion.chunk", "fp_f4ke0a1b2c")
    }
    first = chunks[0].choices[0].delta
    assert (first.role, first.content, first.refusal) == ("assistant", "", None)
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["echo: one", " two three"]
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop" and last.delta.model_fields_set == set()
    assert all("usage" not in c.model_fields_set for c in chunks)


async def test_stream_with_include_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = await collect(stream)
    *body, final = chunks
    assert all("usage" in c.model_fields_set and c.usage is None for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    assert final.choices == []
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (6, 3, 9)


async def test_stream_wire_format(up: FakeOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": USER, "stream": True, "n": 2}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(f"{up.base_url}/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-request-id"].startswith("req_")
        text = await response.text()
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads: list[dict[str, Any]] = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert [p["choices"][0]["index"] for p in payloads[:2]] == [0, 1]
    assert payloads[0]["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": "", "refusal": None},
        "logprobs": None,
        "finish_reason": None,
    }
    assert all("usage" not in p and isinstance(p["obfuscation"], str) for p in payloads)


async def test_single_tool_call(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=user("please call get_weather"), tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].id.startswith("call_") and calls[0].type == "function"
    [function] = functions(completion)
    assert function.name == "get_weather"
    assert json.loads(function.arguments) == WEATHER_ARGS


async def test_parallel_tool_calls_and_their_opt_out(client: openai.AsyncOpenAI) -> None:
    messages = user("call get_time and get_weather")
    both = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assert [f.name for f in functions(both)] == ["get_time", "get_weather"]
    assert len({c.id for c in both.choices[0].message.tool_calls or []}) == 2
    one = await client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=TOOLS, parallel_tool_calls=False
    )
    assert [f.name for f in functions(one)] == ["get_time"]


async def test_tool_choice_forces_required_and_none(client: openai.AsyncOpenAI) -> None:
    forced = await client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [f.name for f in functions(forced)] == ["get_time"]
    required = await client.chat.completions.create(
        model="gpt-4o", messages=USER, tools=TOOLS, tool_choice="required"
    )
    assert [f.name for f in functions(required)] == ["get_weather"]
    none = await client.chat.completions.create(
        model="gpt-4o", messages=user("call get_time"), tools=TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.content == "echo: call get_time"


async def test_tool_calls_streamed(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("call get_weather and get_time"),
        tools=TOOLS,
        stream=True,
    )
    chunks = await collect(stream)
    heads = [
        c.choices[0].delta
        for c in chunks
        if c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].id
    ]
    assert heads[0].role == "assistant" and heads[0].content is None
    assert heads[1].role is None
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for chunk in chunks[:-1]:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.function is not None
            if call.id is not None:
                assert call.type == "function" and call.function.arguments == ""
                names[call.index] = call.function.name or ""
            else:
                assert call.model_fields_set == {"index", "function"}
                assert call.function.model_fields_set == {"arguments"}
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert json.loads(arguments[0]) == WEATHER_ARGS
    assert json.loads(arguments[1]) == {"tz": "sample"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_answer_after_tool_results(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(
        model="gpt-4o", messages=user("call get_weather"), tools=[WEATHER]
    )
    [call] = first.choices[0].message.tool_calls or []
    messages: Any = [
        {"role": "user", "content": "call get_weather"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "tool results: get_weather=sunny, 21C"
    assert second.choices[0].finish_reason == "stop"


async def test_json_object_mode(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("answer in json"),
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "echo: answer in json"}


class Forecast(pydantic.BaseModel):
    city: str
    days: int
    sunny: bool
    temperatures: list[float]


async def test_json_schema_parses_into_pydantic(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.parse(
        model="gpt-4o", messages=user("forecast"), response_format=Forecast
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Forecast(city="echo: forecast", days=1, sunny=True, temperatures=[1.5])
