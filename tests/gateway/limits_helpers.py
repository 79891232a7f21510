"""Helpers of the limits tests: barrier-released bursts, the admin limits view, configs."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc

PRICE = {"input": 2.5, "output": 10.0}


def config(upstream: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    fast = {"connect": 1, "first_byte": 0.6, "idle": 0.6, "total": 5}
    return {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "impatient": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": UPSTREAM_KEY,
                "timeouts": fast,
            },
        },
        "models": [
            {"name": "gpt-4o", "provider": "fake", "price": PRICE},
            {"name": "slow", "provider": "impatient", "model": "gpt-4o", "price": PRICE},
            {"name": "embed", "provider": "fake", "model": "text-embedding-3-small"},
        ],
        # A plan as operators sell them: a key-wide rate, and a tighter one for one endpoint class.
        "plans": {"metered": {"rpm": 5, "endpoints": {"embeddings": {"rpm": 2}}}},
        **extra,
    }


def chat_body(text: str, *, max_tokens: int = 20, stream: bool = False, model: str = "gpt-4o") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


Answer = tuple[int, dict[str, str], bytes]


async def burst(urls: list[str], key: str, bodies: list[bytes], timeout: float = 40.0) -> list[Answer]:
    """Send every body at once, each on its own connection, released together by one event;
    body i goes to urls[i % len(urls)]."""
    go = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as s:

        async def one(i: int, body: bytes) -> Answer:
            await go.wait()
            url = urls[i % len(urls)] + "/v1/chat/completions"
            async with s.post(url, data=body, headers=headers) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

        tasks = [asyncio.create_task(one(i, b)) for i, b in enumerate(bodies)]
        await asyncio.sleep(0.05)
        go.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout)


async def post_chat(url: str, key: str, body: bytes) -> Answer:
    return (await burst([url], key, [body]))[0]


async def post_embeddings(url: str, key: str, text: str) -> Answer:
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s:
        body = {"model": "embed", "input": text}
        async with s.post(url + "/v1/embeddings", json=body, headers=headers) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def limit_rows(gw: GatewayProc, key_id: str) -> dict[str, dict[str, Any]]:
    status, body = await gw.admin("GET", f"/admin/v1/keys/{key_id}/limits")
    assert status == 200, body
    return {row["name"]: row for row in body["limits"]}


async def set_limits(gw: GatewayProc, key_id: str, limits: dict[str, Any], plan: Any = ...) -> None:
    payload: dict[str, Any] = {"limits": limits}
    if plan is not ...:
        payload["plan"] = plan
    status, body = await gw.admin("PATCH", f"/admin/v1/keys/{key_id}/limits", payload)
    assert status == 200, body


def upstream_calls(upstream: FakeOpenAI, marker: str) -> int:
    return sum(1 for r in upstream.requests if marker in str(r.json))


def assert_budget_held(entries: list[dict[str, Any]], budget: float) -> None:
    """A budget trail (every state its counter went through, in order): used + reserved never
    above the budget, and each state the one before plus its change (none missing)."""
    used = reserved = 0.0
    for e in entries:
        assert e["used"] + e["reserved"] <= budget + 1e-12, e
        used, reserved = used + e["used_delta"], reserved + e["reserved_delta"]
        assert (e["used"], e["reserved"]) == (
            pytest.approx(used, abs=1e-12),
            pytest.approx(reserved, abs=1e-12),
        )
