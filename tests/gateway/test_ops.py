"""GET /metrics through the real gateway, and request ids in its logs."""

from __future__ import annotations

import re

import aiohttp
import openai
import pytest

from tests.harness import GatewayProc, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def scrape(gw: GatewayProc) -> str:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return await r.text()


def value(text: str, series: str) -> float:
    m = re.search(re.escape(series) + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_metrics_count_requests_tokens_and_latency(
    gateway: GatewayProc, client: openai.AsyncOpenAI
) -> None:
    series = 'stellargate_requests_total{model="gpt-4o",provider="fake",status="200",dialect="openai"}'
    before = value(await scrape(gateway), series)
    await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    stream = await client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "count"}]
    )
    async for _ in stream:
        pass

    async def counted() -> str | None:
        text = await scrape(gateway)
        return text if value(text, series) >= before + 2 else None

    text = await wait_until(counted, timeout=5)
    assert value(text, 'stellargate_tokens_total{model="gpt-4o",provider="fake",kind="completion"}') > 0
    assert value(text, 'stellargate_cost_usd_total{model="gpt-4o",provider="fake"}') > 0
    assert 'stellargate_time_to_first_token_seconds_count{model="gpt-4o",provider="fake"}' in text
    assert (
        'stellargate_request_duration_seconds_bucket{model="gpt-4o",provider="fake",dialect="openai",le="+Inf"}'
        in text
    )
    assert "stellargate_outbox_depth " in text


async def test_upstream_errors_are_counted_by_class(gateway: GatewayProc, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="down", messages=[{"role": "user", "content": "hi"}])
    text = await scrape(gateway)
    assert re.search(r'stellargate_upstream_errors_total\{provider="down",class="[a-z_]+"\} [1-9]', text)
