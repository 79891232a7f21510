"""What the fake refuses, and how: OpenAI's status, error body and the SDK's typed exception."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes import FakeOpenAI
from tests.fakes.conftest import API_KEY, SDK_TIMEOUT, raw_request

HELLO: Any = [{"role": "user", "content": "hello"}]
CALL: Any = {"id": "call_abc", "type": "function", "function": {"name": "f", "arguments": "{}"}}


async def test_wrong_key_is_rejected_with_masked_key(up: FakeOpenAI) -> None:
    wrong = "sk-proj-abcdefghijklmnopqrstuvwxyz"
    sdk = openai.AsyncOpenAI(base_url=up.base_url, api_key=wrong, max_retries=0, timeout=SDK_TIMEOUT)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    finally:
        await sdk.close()
    error = caught.value
    assert (error.status_code, error.code, error.type, error.param) == (
        401,
        "invalid_api_key",
        "invalid_request_error",
        None,
    )
    assert error.body == {
        "message": "Incorrect API key provided: sk-proj-**********************wxyz. "
        "You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert error.request_id is not None and error.request_id.startswith("req_")


async def test_missing_key(up: FakeOpenAI) -> None:
    response = await raw_request(up, "POST", "/v1/chat/completions", body=b"{}", authorized=False)
    assert response.status == 401
    error = response.json()["error"]
    assert error["message"].startswith(
        "You didn't provide an API key. You need to provide your API key in an"
    )
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)
    assert response.headers["x-request-id"].startswith("req_")


async def test_non_json_body(up: FakeOpenAI) -> None:
    response = await raw_request(up, "POST", "/v1/chat/completions", body=b"{not json")
    assert response.status == 400
    assert response.json()["error"]["message"].startswith("We could not parse the JSON body of your request.")


BAD_REQUESTS: list[tuple[str, dict[str, Any], str | None, str | None, str]] = [
    ("no model", {"messages": HELLO}, None, None, "you must provide a model parameter"),
    (
        "no messages",
        {"model": "gpt-4o"},
        "messages",
        "missing_required_parameter",
        "Missing required parameter",
    ),
    ("empty messages", {"model": "gpt-4o", "messages": []}, "messages", "empty_array", "empty array"),
    (
        "unknown role",
        {"model": "gpt-4o", "messages": [*HELLO, {"role": "robot", "content": "x"}]},
        "messages[1].role",
        "invalid_value",
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool',",
    ),
    (
        "orphan tool message",
        {"model": "gpt-4o", "messages": [*HELLO, {"role": "tool", "tool_call_id": "call_x", "content": "r"}]},
        "messages.[1].role",
        None,
        "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
    ),
    (
        "tool answers an unknown call",
        {
            "model": "gpt-4o",
            "messages": [
                *HELLO,
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_other", "content": "r"},
            ],
        },
        "messages.[2].tool_call_id",
        None,
        "'tool_call_id' of 'call_other' not found in 'tool_calls' of previous message",
    ),
    (
        "unanswered tool call",
        {"model": "gpt-4o", "messages": [*HELLO, {"role": "assistant", "tool_calls": [CALL]}, *HELLO]},
        "messages.[1].role",
        None,
        "did not have response messages: call_abc",
    ),
    (
        "temperature too high",
        {"model": "gpt-4o", "messages": HELLO, "temperature": 2.5},
        "temperature",
        "decimal_above_max_value",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.",
    ),
    (
        "temperature negative",
        {"model": "gpt-4o", "messages": HELLO, "temperature": -1},
        "temperature",
        "decimal_below_min_value",
        "Expected a value >= 0",
    ),
    ("n zero", {"model": "gpt-4o", "messages": HELLO, "n": 0}, "n", "integer_below_min_value", "Invalid 'n'"),
    (
        "unknown argument",
        {"model": "gpt-4o", "messages": HELLO, "tempreature": 1},
        None,
        None,
        "Unrecognized request argument supplied: tempreature",
    ),
    (
        "json_object without the word",
        {"model": "gpt-4o", "messages": HELLO, "response_format": {"type": "json_object"}},
        "messages",
        None,
        "must contain the word 'json'",
    ),
    (
        "non-strict json_schema",
        {
            "model": "gpt-4o",
            "messages": HELLO,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object", "properties": {}}},
            },
        },
        "response_format",
        "invalid_json_schema",
        "'additionalProperties' is required to be supplied and to be false",
    ),
    (
        "stream_options without stream",
        {"model": "gpt-4o", "messages": HELLO, "stream_options": {"include_usage": True}},
        "stream_options",
        None,
        "only allowed when 'stream' is enabled",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "code", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
async def test_bad_requests(
    client: openai.AsyncOpenAI, body: dict[str, Any], param: str | None, code: str | None, message: str
) -> None:
    """Sent through the SDK's low-level `post`, so its typed params do not get in the way."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", body=body, cast_to=object)
    error = caught.value
    assert (error.status_code, error.type, error.param, error.code) == (
        400,
        "invalid_request_error",
        param,
        code,
    )
    assert message in error.message


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert caught.value.body == {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


async def test_models_are_configurable() -> None:
    async with FakeOpenAI(api_key=API_KEY, models=["my-model"]) as up:
        sdk = openai.AsyncOpenAI(base_url=up.base_url, api_key=API_KEY, max_retries=0, timeout=SDK_TIMEOUT)
        try:
            completion = await sdk.chat.completions.create(model="my-model", messages=HELLO)
            assert completion.model == "my-model"
            with pytest.raises(openai.NotFoundError):
                await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
        finally:
            await sdk.close()


async def test_wrong_endpoint_for_model(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-3.5-turbo-instruct", messages=HELLO)
    assert "not a chat model" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        await client.completions.create(model="gpt-4o", prompt="hi")
    assert "This is a chat model" in caught.value.message


async def test_invalid_url(up: FakeOpenAI) -> None:
    response = await raw_request(up, "POST", "/v1/chat/complete", body=b"{}")
    assert response.status == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/chat/complete)"
