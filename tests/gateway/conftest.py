"""One gateway process and one fake OpenAI upstream shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, free_port, start_gateway

UPSTREAM_KEY = "sk-upstream-secret-4f9a"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=UPSTREAM_KEY, chunk_delay=0.001) as up:
        yield up


def gateway_config(upstream: FakeOpenAI) -> dict[str, object]:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    fast = {"connect": 1, "first_byte": 0.6, "idle": 0.6, "total": 5}
    return {
        "server": {"max_body_mb": 1},
        "usage": {"flush_interval": 0.05},
        "providers": {
            "fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "impatient": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": UPSTREAM_KEY,
                "timeouts": fast,
            },
            "down": {"type": "openai", "base_url": closed, "api_key": "sk-x"},
            "wrongkey": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": "sk-wrong-provider-key-123",
            },
        },
        "models": [
            {
                "name": "gpt-4o",
                "provider": "fake",
                "model": "gpt-4o",
                "context_window": 128000,
                "price": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
            },
            {"name": "mini", "provider": "fake", "model": "gpt-4o-mini", "context_window": 128000},
            {"name": "slow", "provider": "impatient", "model": "gpt-4o"},
            {"name": "down", "provider": "down", "model": "gpt-4o"},
            {"name": "badauth", "provider": "wrongkey", "model": "gpt-4o"},
        ],
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProc]:
    tmp: Path = tmp_path_factory.mktemp("gateway")
    gw = await start_gateway(tmp, gateway_config(upstream))
    try:
        yield gw
    finally:
        gw.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_key(gateway: GatewayProc) -> str:
    _, key = await gateway.create_key("session")
    return key


@pytest_asyncio.fixture(loop_scope="session")
async def client(gateway: GatewayProc, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=api_key, max_retries=0, timeout=20)
    try:
        yield c
    finally:
        await c.close()
