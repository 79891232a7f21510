"""Fixtures for the fake upstream's own tests: a fresh server per test and an SDK client without retries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from multidict import CIMultiDictProxy

from tests.fakes import FakeOpenAI

API_KEY = "sk-upstream-test-key-0123456789"
SDK_TIMEOUT = 10.0  # bounds every SDK call, hence every test that only talks through the SDK


@pytest.fixture
async def up() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=API_KEY, created=1700000000) as server:
        yield server


@pytest.fixture
async def client(up: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=up.base_url, api_key=API_KEY, max_retries=0, timeout=SDK_TIMEOUT)
    yield sdk
    await sdk.close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    up: FakeOpenAI,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    authorized: bool = True,
) -> RawResponse:
    """One request with aiohttp, for what the SDK cannot send (no key, broken JSON) or hides (raw bytes)."""
    all_headers = {"Authorization": f"Bearer {API_KEY}"} if authorized else {}
    all_headers.update(headers or {})
    timeout = aiohttp.ClientTimeout(total=SDK_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, up.url + path, data=body, headers=all_headers) as response,
    ):
        return RawResponse(response.status, response.headers, await response.read())
