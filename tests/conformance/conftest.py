"""One gateway serving one model per provider adapter, each backed by its fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, start_gateway

Fake = FakeOpenAI | FakeAnthropic | FakeGemini


@dataclass(frozen=True)
class Case:
    model: str  # the gateway's model id
    provider_type: str
    upstream_model: str
    overloaded_status: int  # what the provider sends when it is overloaded


CASES = {
    "openai": Case("oa", "openai", "gpt-4o", 503),
    "anthropic": Case("an", "anthropic", "claude-sonnet-4-6", 529),
    "gemini": Case("ge", "gemini", "gemini-2.0-flash", 503),  # no thinking tokens: counts match
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@dataclass
class World:
    gateway: GatewayProc
    key: str
    fakes: dict[str, Fake]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fakes: dict[str, Fake] = {
        "openai": FakeOpenAI(api_key="sk-oa", chunk_delay=0.002),
        "anthropic": FakeAnthropic(api_key="sk-ant", chunk_delay=0.002),
        "gemini": FakeGemini(api_key="AIza-ge", chunk_delay=0.002),
    }
    keys = {"openai": "sk-oa", "anthropic": "sk-ant", "gemini": "AIza-ge"}
    for f in fakes.values():
        await f.start()
    fast = {"connect": 2, "first_byte": 3, "idle": 0.8, "total": 20}
    config = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            name: {
                "type": CASES[name].provider_type,
                "base_url": f.base_url,
                "api_key": keys[name],
                "timeouts": fast,
            }
            for name, f in fakes.items()
        },
        "models": [
            {
                "name": c.model,
                "provider": name,
                "model": c.upstream_model,
                "max_output_tokens": 1024,
                "price": {"input": 1.0, "output": 2.0},
            }
            for name, c in CASES.items()
        ],
    }
    gw = await start_gateway(tmp_path_factory.mktemp("conformance"), config)
    try:
        _, key = await gw.create_key("conformance")
        yield World(gw, key, fakes)
    finally:
        gw.stop()
        for f in fakes.values():
            await f.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(world: World) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=world.gateway.v1, api_key=world.key, max_retries=0, timeout=15)
    yield c
    await c.close()


@pytest.fixture(autouse=True)
def _no_faults(world: World) -> Any:
    for f in world.fakes.values():
        f.clear_fault()
    yield
    for f in world.fakes.values():
        f.clear_fault()
