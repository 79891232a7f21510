"""Traces leave the gateway over OTLP/HTTP when tracing.enabled, with one span per request and
one per upstream attempt."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402


async def test_spans_are_exported_over_otlp(upstream: FakeOpenAI, tmp_path: Path) -> None:
    got: list[ExportTraceServiceRequest] = []

    async def collect(req: web.Request) -> web.Response:
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await req.read())
        got.append(msg)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": "gpt-4o", "provider": "fake"}],
        "tracing": {"enabled": True, "endpoint": f"http://127.0.0.1:{port}/v1/traces"},
    }
    gw = await start_gateway(tmp_path, cfg)
    try:
        _, key = await gw.create_key("traced")
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "secret prompt words"}]}
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r,
        ):
            assert r.status == 200

        async def spans() -> list[object]:
            return [sp for m in got for rs in m.resource_spans for ss in rs.scope_spans for sp in ss.spans]

        found = await wait_until(spans, timeout=10)
        names = {sp.name for sp in found}  # type: ignore[attr-defined]
        assert "chat gpt-4o" in names and "chat fake/gpt-4o" in names
        raw = b"".join(m.SerializeToString() for m in got)
        assert b"gen_ai.usage.input_tokens" in raw and b"secret prompt words" not in raw
    finally:
        gw.stop()
        await runner.cleanup()
