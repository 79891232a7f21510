"""Config reload: POST /admin/v1/reload and SIGHUP apply model changes, keep requests in flight,
refuse an invalid file, and reach every worker."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes._faults import fault_marker
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _config(upstream: FakeOpenAI, models: list[str]) -> dict[str, Any]:
    return {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": m, "provider": "fake", "model": "gpt-4o"} for m in models],
    }


def rewrite(gw: GatewayProc, change: dict[str, Any]) -> None:
    cfg = yaml.safe_load(gw.config_path.read_text())
    cfg.update(change)
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


async def chat(gw: GatewayProc, key: str, model: str, text: str = "hi") -> int:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r,
    ):
        await r.read()
        return r.status


async def test_reload_applies_models_and_keeps_requests_in_flight(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await start_gateway(tmp_path, _config(upstream, ["old"]))
    try:
        _, key = await gw.create_key("reload")
        assert await chat(gw, key, "new") == 404
        slow = asyncio.create_task(chat(gw, key, "old", fault_marker("slow_first_byte=0.6")))
        await asyncio.sleep(0.2)
        rewrite(gw, _config(upstream, ["new"]))
        status, body = await gw.admin("POST", "/admin/v1/reload")
        assert status == 200, body
        assert body["applied"] == ["models"] and body["models"] == ["new"]
        assert await slow == 200  # resolved before the swap: finishes on the old configuration
        assert await chat(gw, key, "new") == 200
        assert await chat(gw, key, "old") == 404

        rewrite(gw, {"models": [{"name": "x", "provider": "nope"}]})
        status, body = await gw.admin("POST", "/admin/v1/reload")
        assert status == 400 and body["error"]["code"] == "invalid_config"
        assert await chat(gw, key, "new") == 200  # nothing changed

        rewrite(gw, _config(upstream, ["new", "viahup"]))
        os.kill(gw.proc.pid, signal.SIGHUP)
        assert await wait_until(lambda: _ok(gw, key, "viahup"), timeout=5)
        assert gw.proc.poll() is None

        async def actors() -> set[str]:
            # The entry is written just after the swap, so the new model can answer first.
            _, log = await gw.admin("GET", "/v1/audit-log?action=config.reloaded")
            return {e["actor"] for e in log["data"]}

        assert await wait_until(lambda: _has(actors(), {"admin", "signal:SIGHUP"}), timeout=5)
    finally:
        gw.stop()


async def _ok(gw: GatewayProc, key: str, model: str) -> bool:
    return await chat(gw, key, model) == 200


async def test_a_reload_reaches_every_worker(upstream: FakeOpenAI, tmp_path: Path) -> None:
    # Several workers need Redis (the config check refuses them without it).
    cfg = {**_config(upstream, ["old"]), "redis": "redis://127.0.0.1:6379/0"}
    gw = await start_gateway(tmp_path, cfg, workers=2)
    try:
        _, key = await gw.create_key("reload-workers")
        rewrite(gw, _config(upstream, ["old", "added"]))
        status, _ = await gw.admin("POST", "/admin/v1/reload")
        assert status == 200

        async def everywhere() -> bool:
            statuses = await asyncio.gather(*(chat(gw, key, "added") for _ in range(12)))
            return all(s == 200 for s in statuses)

        assert await wait_until(everywhere, timeout=6, interval=0.3)
    finally:
        gw.stop()


async def _has(found: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await found
