"""Chat calls and breaker trips shared by the tests of ejection events and of reloads."""

from __future__ import annotations

import time

import aiohttp

from tests.fakes._faults import fault_marker
from tests.harness import GatewayProc


async def chat(gw: GatewayProc, key: str, model: str, text: str = "hello") -> int:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s,
        s.post(gw.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r,
    ):
        await r.read()
        return r.status


async def eject(gw: GatewayProc, key: str, model: str, failures: int = 2) -> float:
    """Trip the model's breaker (``failures``: its ``breaker.failures``); the unix time just after
    the failure that ejected it."""
    for _ in range(failures):
        assert await chat(gw, key, model, fault_marker("status=500")) >= 500
    at = time.time()
    assert await chat(gw, key, model) == 503  # out of rotation: no deployment can take it
    return at
