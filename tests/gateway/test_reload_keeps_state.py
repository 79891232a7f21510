"""A config reload keeps the live state of unchanged deployments (an ejection runs out its
cooldown, latency EWMA, counters, requests in flight) and starts changed ones afresh, through the
real gateway with fault-injecting fake upstreams. (tests/gateway/test_reload.py covers what a
reload applies, an invalid file, SIGHUP and every worker.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.fakes._faults import fault_marker
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.breaker_helpers import chat, eject
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

COOLDOWN = 3.0  # long enough to reload and look around while the deployment is ejected


@pytest_asyncio.fixture(loop_scope="session")
async def ups() -> AsyncIterator[list[FakeOpenAI]]:
    fakes = [FakeOpenAI(api_key=None, chunk_delay=0.001) for _ in range(2)]
    for f in fakes:
        await f.start()
    try:
        yield fakes
    finally:
        for f in fakes:
            await f.stop()


def _config(ups: list[FakeOpenAI]) -> dict[str, Any]:
    def prov(up: FakeOpenAI) -> dict[str, Any]:
        return {"type": "openai", "base_url": up.base_url, "api_key": "sk-x"}

    return {
        "limits": {"rps": "unlimited"},
        "routing": {
            "retries": 0,
            "breaker": {"failures": 2, "cooldown": COOLDOWN, "max_cooldown": 10, "min_requests": 1000},
        },
        "providers": {"a": prov(ups[0]), "b": prov(ups[0])},
        "models": [
            {"name": "m", "provider": "a", "model": "gpt-4o"},
            {"name": "other", "provider": "b", "model": "gpt-4o"},
        ],
    }


async def views(gw: GatewayProc) -> dict[str, dict[str, Any]]:
    status, body = await gw.admin("GET", "/admin/v1/deployments")
    assert status == 200, body
    return {d["id"]: d for d in body["data"]}


async def reload(gw: GatewayProc, cfg: dict[str, Any]) -> dict[str, Any]:
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    status, body = await gw.admin("POST", "/admin/v1/reload")
    assert status == 200, body
    return dict(body)


async def test_a_reload_keeps_unchanged_deployments_and_renews_changed_ones(
    ups: list[FakeOpenAI], tmp_path: Path
) -> None:
    base = _config(ups)
    gw = await start_gateway(tmp_path, {**base, "usage": {"flush_interval": 0.05}})
    try:
        _, key = await gw.create_key("reload-state")
        for _ in range(3):
            assert await chat(gw, key, "other") == 200
        ejected_at = await eject(gw, key, "m")
        slow = asyncio.create_task(chat(gw, key, "other", fault_marker("slow_first_byte=1.5")))

        async def in_flight() -> dict[str, dict[str, Any]]:
            v = await views(gw)
            return v if v["b/gpt-4o"]["in_flight"] == 1 else {}

        before = await wait_until(in_flight, timeout=5, interval=0.05)
        assert before["a/gpt-4o"]["state"] == "open" and before["b/gpt-4o"]["latency_ewma_ms"] is not None

        # Unrelated changes: a model added, provider a's key and headers, a routing figure.
        cfg = yaml.safe_load(gw.config_path.read_text())
        cfg["models"].append({"name": "extra", "provider": "b", "model": "gpt-4o-mini"})
        cfg["providers"]["a"].update(api_key="sk-rotated", headers={"x-team": "blue"})
        cfg["routing"]["backoff"] = {"base": 0.05}
        body = await reload(gw, cfg)
        assert body["applied"] == ["models", "providers", "routing"]
        assert body["deployments"] == {"kept": ["a/gpt-4o", "b/gpt-4o"], "fresh": ["b/gpt-4o-mini"]}

        after = await views(gw)
        a, b = after["a/gpt-4o"], after["b/gpt-4o"]
        assert a["state"] == "open" and a["ejections"] == 1 and a["ejected_for_s"] > 0
        assert a["requests"] == before["a/gpt-4o"]["requests"] == 2
        assert b["latency_ewma_ms"] == before["b/gpt-4o"]["latency_ewma_ms"]
        assert b["requests"] == before["b/gpt-4o"]["requests"] and b["in_flight"] == 1
        assert await chat(gw, key, "m") == 503  # still ejected
        assert await chat(gw, key, "extra") == 200

        assert await slow == 200  # in flight across the reload, counted on the same deployment
        assert (await views(gw))["b/gpt-4o"]["in_flight"] == 0

        async def served() -> float:
            return time.time() if await chat(gw, key, "m") == 200 else 0.0

        back = await wait_until(served, timeout=COOLDOWN + 5, interval=0.1)
        assert back - ejected_at >= COOLDOWN - 0.1  # until its cooldown, as if nothing was reloaded
        probe = ups[0].requests[-1]  # the provider's new key and headers apply at once
        assert probe.headers["authorization"] == "Bearer sk-rotated" and probe.headers["x-team"] == "blue"

        # Moving provider a to another upstream: its deployment starts afresh and serves at once,
        # while a request in flight on the old one finishes there.
        await eject(gw, key, "m")
        seen_by_new = len(ups[1].requests)
        old_slow = asyncio.create_task(chat(gw, key, "other", fault_marker("slow_first_byte=0.8")))
        await asyncio.sleep(0.2)
        cfg["providers"]["a"]["base_url"] = ups[1].base_url
        body = await reload(gw, cfg)
        assert body["deployments"] == {"kept": ["b/gpt-4o", "b/gpt-4o-mini"], "fresh": ["a/gpt-4o"]}
        a = (await views(gw))["a/gpt-4o"]
        assert a["state"] == "closed" and a["ejections"] == 0 and a["requests"] == 0
        assert a["latency_ewma_ms"] is None
        assert await chat(gw, key, "m") == 200
        assert len(ups[1].requests) == seen_by_new + 1
        assert await old_slow == 200

        # A reload that changes nothing keeps everything, an ejection included.
        await eject(gw, key, "m")
        body = await reload(gw, cfg)
        assert body["applied"] == [] and body["deployments"]["fresh"] == []
        assert (await views(gw))["a/gpt-4o"]["state"] == "open"
        assert await chat(gw, key, "m") == 503
        assert gw.proc.poll() is None
    finally:
        gw.stop()
