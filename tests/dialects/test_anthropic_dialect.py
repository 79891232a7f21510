"""The gateway serving the Anthropic Messages API: the official anthropic SDK -> the real gateway ->
(i) the fake Anthropic API (identity path) and (ii) the fake OpenAI API (translated)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

ANT_KEY = "sk-ant-api03-dialect-upstream-1f2e"
OAI_KEY = "sk-openai-dialect-upstream-9a8b"
SONNET = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME: Any = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
# (i) the identity path and (ii) the translated path answer every test alike.
MODELS = ["claude", "gpt"]


def user(content: Any) -> Any:
    return [{"role": "user", "content": content}]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ant() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=ANT_KEY, chunk_delay=0.001) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=OAI_KEY, chunk_delay=0.001) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    ant: FakeAnthropic, oai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProc]:
    config = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "ant": {"type": "anthropic", "base_url": ant.base_url, "api_key": ANT_KEY},
            "oai": {"type": "openai", "base_url": oai.base_url, "api_key": OAI_KEY},
        },
        "models": [
            {"name": "claude", "provider": "ant", "model": SONNET},
            {"name": "gpt", "provider": "oai", "model": "gpt-4o"},
        ],
    }
    gw = await start_gateway(tmp_path_factory.mktemp("anthropic-dialect"), config)
    try:
        yield gw
    finally:
        gw.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api_key(gateway: GatewayProc) -> str:
    return (await gateway.create_key("anthropic-dialect"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    gateway: GatewayProc, api_key: str, ant: FakeAnthropic, oai: FakeOpenAI
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    ant.clear_fault()
    oai.clear_fault()
    c = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=api_key, max_retries=0, timeout=10)
    try:
        yield c
    finally:
        await c.close()
        ant.clear_fault()
        oai.clear_fault()


def last_anthropic(ant: FakeAnthropic) -> Any:
    return ant.requests_to("/v1/messages")[-1]


# -- both paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_plain_message(client: anthropic.AsyncAnthropic, model: str) -> None:
    raw = await client.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=user("hello there")
    )
    m = await raw.parse()
    assert raw.headers["request-id"]
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in m.content] == [("text", "echo: hello there")]
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0
    assert m.usage.output_tokens == 3


@pytest.mark.parametrize("model", MODELS)
async def test_stream_helper(client: anthropic.AsyncAnthropic, model: str) -> None:
    async with client.messages.stream(
        model=model, max_tokens=100, system="be brief", messages=user("one two three four five")
    ) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "echo: one two three four five"
    assert len(pieces) > 1
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
async def test_raw_stream_event_sequence(client: anthropic.AsyncAnthropic, model: str) -> None:
    stream = await client.messages.create(model=model, max_tokens=100, messages=user("a b c d"), stream=True)
    types = [ev.type async for ev in stream]
    assert types[0] == "message_start"
    assert types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}


@pytest.mark.parametrize("model", MODELS)
async def test_tool_use_and_results(client: anthropic.AsyncAnthropic, model: str) -> None:
    msgs: list[Any] = user("please call get_weather and get_time")
    m = await client.messages.create(model=model, max_tokens=100, messages=msgs, tools=[WEATHER, TIME])
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [
        ("get_weather", {"city": "sample"}),
        ("get_time", {"tz": "sample"}),
    ]
    msgs.append({"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]})
    msgs.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": f"result of {u.name}"} for u in uses
            ],
        }
    )
    m2 = await client.messages.create(model=model, max_tokens=100, messages=msgs, tools=[WEATHER, TIME])
    text = m2.content[0].text  # type: ignore[union-attr]
    assert text == "tool results: get_weather=result of get_weather; get_time=result of get_time"


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_tool_use(client: anthropic.AsyncAnthropic, model: str) -> None:
    async with client.messages.stream(
        model=model,
        max_tokens=100,
        messages=user("call get_time"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in final.content] == [
        ("tool_use", "get_time", {"tz": "sample"})
    ]


@pytest.mark.parametrize("model", MODELS)
async def test_images(client: anthropic.AsyncAnthropic, model: str) -> None:
    content = [
        {"type": "text", "text": "what are these"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    m = await client.messages.create(model=model, max_tokens=100, messages=user(content))
    assert m.content[0].text == "echo: what are these (saw 2 images)"  # type: ignore[union-attr]


@pytest.mark.parametrize("model", MODELS)
async def test_structured_output(client: anthropic.AsyncAnthropic, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    m = await client.messages.create(
        model=model,
        max_tokens=100,
        messages=user("give json"),
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert json.loads(m.content[0].text) == {"answer": "echo: give json"}  # type: ignore[union-attr]


# -- the identity path ---------------------------------------------------------------------------


async def test_identity_path_forwards_the_body_with_only_the_model_rewritten(
    client: anthropic.AsyncAnthropic, ant: FakeAnthropic
) -> None:
    params: Any = {
        "max_tokens": 50,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": user([{"type": "text", "text": "keep me"}]),
        "metadata": {"user_id": "u-1"},
        "stop_sequences": ["ZZ"],
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
    }
    await client.messages.create(model="claude", **params, extra_headers={"anthropic-beta": "test-beta-1"})
    got = last_anthropic(ant)
    assert got.json == {"model": SONNET, **params}
    assert got.headers["x-api-key"] == ANT_KEY
    assert "authorization" not in got.headers  # the client's gateway key goes nowhere
    assert got.headers["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert got.headers["anthropic-beta"] == "test-beta-1"


async def test_identity_stream_error_event_raises(
    client: anthropic.AsyncAnthropic, ant: FakeAnthropic
) -> None:
    ant.set_fault("stream_error_after=4", times=1)
    with pytest.raises(anthropic.APIStatusError) as e:
        async with client.messages.stream(model="claude", max_tokens=100, messages=user("w " * 20)) as stream:
            await stream.get_final_message()
    assert e.value.type == "overloaded_error"


async def test_usage_ledger_records_anthropic_calls(
    client: anthropic.AsyncAnthropic, gateway: GatewayProc
) -> None:
    m = await client.messages.create(model="claude", max_tokens=100, messages=user("ledger me"))
    async with client.messages.stream(model="gpt", max_tokens=100, messages=user("ledger me too")) as stream:
        await stream.get_final_message()

    async def rows() -> Any:
        _, a = await gateway.admin("GET", "/admin/v1/usage?model=claude")
        _, b = await gateway.admin("GET", "/admin/v1/usage?model=gpt")
        found = [
            r for r in a["data"] + b["data"] if r["streamed"] or r["prompt_tokens"] == m.usage.input_tokens
        ]
        return found if any(r["model"] == "gpt" and r["streamed"] for r in found) else None

    found = await wait_until(rows, timeout=5)
    assert all(r["dialect"] == "anthropic" and r["endpoint"] == "chat" for r in found)
    assert any(r["model"] == "claude" and r["completion_tokens"] == 4 for r in found)


# -- the translated path -------------------------------------------------------------------------


async def test_translated_request_reaches_openai(client: anthropic.AsyncAnthropic, oai: FakeOpenAI) -> None:
    await client.messages.create(
        model="gpt",
        max_tokens=33,
        system="be brief",
        messages=user("hi"),
        stop_sequences=["X"],
        metadata={"user_id": "u-9"},
        extra_body={"thinking": {"type": "disabled"}},
    )
    sent = oai.requests_to("/v1/chat/completions")[-1].json
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (sent["max_tokens"], sent["stop"], sent["user"]) == (33, ["X"], "u-9")
    assert "thinking" not in sent


async def test_server_tools_are_refused_on_the_translated_path(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        await client.messages.create(
            model="gpt",
            max_tokens=10,
            messages=user("search"),
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )
    assert "web_search_20250305" in e.value.message


# -- errors --------------------------------------------------------------------------------------


def assert_anthropic_error(body: Any, type_: str) -> None:
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == type_
    assert body["error"]["message"]


async def test_invalid_request_is_400(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        await client.messages.create(
            model="claude", messages=user("x"), extra_body={"max_tokens": None}, max_tokens=anthropic.omit
        )  # type: ignore[arg-type]
    assert e.value.type == "invalid_request_error"
    assert e.value.api_message == "max_tokens: Input should be a valid integer"
    assert e.value.request_id
    assert_anthropic_error(e.value.body, "invalid_request_error")
    for bad, message in [
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"messages": user([{"type": "video"}])}, "messages.0.content.0.type: Input tag 'video'"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as e:
            await client.messages.create(model="claude", max_tokens=5, messages=user("x"), extra_body=bad)
        assert (e.value.api_message or "").startswith(message), e.value.api_message


async def test_missing_max_tokens_is_400_field_required(gateway: GatewayProc, api_key: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gateway.url + "/v1/messages",
            json={"model": "claude", "messages": user("x")},
            headers={"x-api-key": api_key},
        ) as r,
    ):
        assert r.status == 400
        body = await r.json()
    assert_anthropic_error(body, "invalid_request_error")
    assert body["error"]["message"] == "max_tokens: Field required"
    assert body["request_id"] == r.headers["request-id"]


async def test_authentication_errors_are_401(gateway: GatewayProc, api_key: str) -> None:
    bad = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sg-not-a-real-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        await bad.messages.create(model="claude", max_tokens=5, messages=user("x"))
    await bad.close()
    assert_anthropic_error(e.value.body, "authentication_error")
    async with aiohttp.ClientSession() as s:
        body = {"model": "claude", "max_tokens": 5, "messages": user("x")}
        async with s.post(gateway.url + "/v1/messages", json=body) as r:
            assert r.status == 401
            assert_anthropic_error(await r.json(), "authentication_error")
            assert r.headers["request-id"]
        async with s.post(gateway.url + "/api/v1/messages", json=body, headers={"x-api-key": api_key}) as r:
            assert r.status == 200  # x-api-key, under the /api prefix too


async def test_permission_and_not_found(gateway: GatewayProc, client: anthropic.AsyncAnthropic) -> None:
    _, key = await gateway.create_key("gpt-only", models=["gpt"])
    limited = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        await limited.messages.create(model="claude", max_tokens=5, messages=user("x"))
    await limited.close()
    assert_anthropic_error(e.value.body, "permission_error")
    with pytest.raises(anthropic.NotFoundError) as e2:
        await client.messages.create(model="no-such-model", max_tokens=5, messages=user("x"))
    assert_anthropic_error(e2.value.body, "not_found_error")


@pytest.mark.parametrize("model", MODELS)
async def test_rate_limit_is_429_with_retry_after(
    client: anthropic.AsyncAnthropic, ant: FakeAnthropic, oai: FakeOpenAI, model: str
) -> None:
    (ant if model == "claude" else oai).set_fault("status=429;retry_after=9", times=1)
    with pytest.raises(anthropic.RateLimitError) as e:
        await client.messages.create(model=model, max_tokens=5, messages=user("x"))
    assert e.value.response.headers["retry-after"] == "9"
    assert_anthropic_error(e.value.body, "rate_limit_error")


@pytest.mark.parametrize(
    ("fault", "status", "type_"),
    [("status=529", 503, "overloaded_error"), ("status=500", 502, "api_error")],
)
async def test_upstream_failures_are_5xx(
    client: anthropic.AsyncAnthropic, ant: FakeAnthropic, fault: str, status: int, type_: str
) -> None:
    ant.set_fault(fault, times=1)
    with pytest.raises(anthropic.InternalServerError) as e:
        await client.messages.create(model="claude", max_tokens=5, messages=user("x"))
    assert e.value.status_code == status
    assert_anthropic_error(e.value.body, type_)


async def test_translated_mid_stream_failure_is_an_error_event(
    client: anthropic.AsyncAnthropic, oai: FakeOpenAI
) -> None:
    oai.set_fault("drop_after=3", times=1)
    with pytest.raises(anthropic.APIStatusError) as e:
        async with client.messages.stream(model="gpt", max_tokens=100, messages=user("w " * 20)) as stream:
            await stream.get_final_message()
    assert e.value.type == "api_error"


# -- count_tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_count_tokens(client: anthropic.AsyncAnthropic, model: str) -> None:
    short = await client.messages.count_tokens(model=model, messages=user("hello"))
    long = await client.messages.count_tokens(
        model=model, system="x " * 400, messages=user("hello " * 100), tools=[WEATHER]
    )
    assert 0 < short.input_tokens < long.input_tokens
    # Counted with the BPE tokenizer (cl100k_base: 250 tokens of text, o200k_base: 100, plus the
    # message's framing), not guessed at 4 characters a token (which would say about 57).
    cjk = await client.messages.count_tokens(model=model, messages=user("你好世界" * 50))
    assert cjk.input_tokens in range(100, 115) or cjk.input_tokens in range(250, 265)
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(model="nope", messages=user("hello"))
