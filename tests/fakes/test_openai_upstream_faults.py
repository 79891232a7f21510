"""Fault injection (server-wide and per request) and client-disconnect recording."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.fakes import FAULT_HEADER, FakeOpenAI, Fault, fault_marker
from tests.fakes.conftest import API_KEY, SDK_TIMEOUT, raw_request

REPO_ROOT = Path(__file__).resolve().parents[2]
HELLO: Any = [{"role": "user", "content": "one two three four five six seven eight"}]


async def drain(stream: openai.AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


def fault(spec: str) -> dict[str, str]:
    return {FAULT_HEADER: spec}


async def test_rate_limit(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers=fault("status=429;retry_after=2")
        )
    error = caught.value
    assert (error.status_code, error.code, error.type) == (429, "rate_limit_exceeded", "requests")
    assert "- Rate limit reached for gpt-4o in organization org-fake on requests per min" in error.message
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.response.headers["x-ratelimit-limit-tokens"]


@pytest.mark.parametrize(
    ("status", "exception"), [(500, openai.InternalServerError), (503, openai.InternalServerError)]
)
async def test_server_errors(
    client: openai.AsyncOpenAI, status: int, exception: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exception) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers=fault(f"status={status}")
        )
    assert caught.value.status_code == status
    assert caught.value.type == "server_error"
    assert caught.value.request_id is not None and caught.value.request_id in caught.value.message


async def test_injected_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers=fault("status=400")
        )
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")


async def test_server_fault_for_a_number_of_requests(up: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    up.set_fault("status=503", times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content is not None
    up.fault = Fault(status=500)
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="text-embedding-3-small", input="x")
    up.clear_fault()
    assert up.fault is None


async def test_faults_per_request_are_independent(client: openai.AsyncOpenAI) -> None:
    failing = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_headers=fault("status=500")
    )
    fine = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    results = await asyncio.gather(failing, fine, return_exceptions=True)
    assert isinstance(results[0], openai.InternalServerError)
    assert not isinstance(results[1], BaseException)
    assert results[1].choices[0].message.content == "echo: one two three four five six seven eight"


async def test_fault_marker_in_the_prompt(client: openai.AsyncOpenAI) -> None:
    """For gateways that do not forward x-fake-fault: the marker rides inside the message text."""
    messages: Any = [{"role": "user", "content": f"hello {fault_marker('status=429')}"}]
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="gpt-4o", messages=messages)
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="text-embedding-3-small", input=fault_marker("status=500"))


async def test_bad_json(up: FakeOpenAI) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
    response = await raw_request(up, "POST", "/v1/chat/completions", body=body, headers=fault("bad_json"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match=r"Unterminated string|Expecting"):
        response.json()


async def test_bad_fault_spec(up: FakeOpenAI) -> None:
    response = await raw_request(up, "POST", "/v1/chat/completions", body=b"{}", headers=fault("explode=1"))
    assert response.status == 400
    assert response.json()["error"]["type"] == "fake_fault_error"


async def test_slow_first_byte(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_headers=fault("slow_first_byte=0.3")
    )
    assert time.monotonic() - started >= 0.3


async def test_disconnect_during_slow_first_byte_is_recorded(
    up: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers=fault("slow_first_byte=30"), timeout=0.2
        )
    gave_up = time.monotonic()
    assert await up.wait_for_disconnect(within=2) - gave_up < 1.0


async def test_stall_keeps_the_connection_open_until_the_client_leaves(
    up: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, extra_headers=fault("stall_after=2"), timeout=0.5
    )
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APITimeoutError):
        await drain(stream, received)
    gave_up = time.monotonic()
    assert len(received) == 2
    assert await up.wait_for_disconnect(within=2) - gave_up < 1.0
    assert up.active_streams == 0


async def test_drop_closes_the_connection_mid_stream(up: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, extra_headers=fault("drop_after=3")
    )
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        await drain(stream, received)
    assert len(received) == 3
    assert up.stream_disconnects == []  # the fake hung up; the client did not leave


async def test_drop_before_a_non_streamed_answer(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers=fault("drop_after=0")
        )


async def test_client_closing_a_slow_stream_is_recorded_promptly(
    up: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, extra_headers=fault("chunk_delay=0.2")
    )
    first = await anext(aiter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert up.active_streams == 1
    await stream.close()
    closed = time.monotonic()
    assert await up.wait_for_disconnect(within=2) - closed < 1.0
    assert up.active_streams == 0


async def test_a_complete_stream_records_no_disconnect(up: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert up.stream_disconnects == []


async def test_stop_does_not_wait_for_a_stalled_client() -> None:
    up = FakeOpenAI(api_key=API_KEY, fault="stall_after=1")
    await up.start()
    sdk = openai.AsyncOpenAI(base_url=up.base_url, api_key=API_KEY, max_retries=0, timeout=SDK_TIMEOUT)
    try:
        stream = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        await anext(aiter(stream))
        started = time.monotonic()
        await up.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(openai.APIConnectionError):
            await anext(aiter(stream))
    finally:
        await up.stop()
        await sdk.close()


async def test_runs_out_of_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_upstream", "--port", "0", "--api-key", API_KEY,
        stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(SDK_TIMEOUT):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("READY ")
        port = int(line.split()[1])
        sdk = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0, timeout=SDK_TIMEOUT
        )
        try:
            completion = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
            assert completion.choices[0].message.content == "echo: one two three four five six seven eight"
            await sdk.put(
                f"http://127.0.0.1:{port}/_fake/fault", body={"fault": "status=503"}, cast_to=object
            )
            with pytest.raises(openai.InternalServerError):
                await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
            state: Any = await sdk.get(f"http://127.0.0.1:{port}/_fake/state", cast_to=object)
        finally:
            await sdk.close()
        assert [r["path"] for r in state["requests"]] == ["/v1/chat/completions"] * 2
        assert state["fault"]["status"] == 503
    finally:
        process.terminate()
        async with asyncio.timeout(SDK_TIMEOUT):
            assert await process.wait() == 0
