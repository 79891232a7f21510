"""Webhooks through the real gateway: signed deliveries, retries with backoff, 410 disables,
rotation, the delivery log, and the SSRF guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from stellargate.webhooks import verify
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []  # statuses to answer, in order; then 200
        self.url = ""

    async def handle(self, req: web.Request) -> web.Response:
        self.got.append(({k.lower(): v for k, v in req.headers.items()}, await req.read()))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def hooked(upstream: FakeOpenAI, tmp_path: Path) -> AsyncIterator[GatewayProc]:
    cfg: dict[str, Any] = {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": "gpt-4o", "provider": "fake"}],
        "webhooks": {"allow_private": True, "backoff_initial": 0.2, "max_attempts": 3, "poll_interval": 0.1},
    }
    gw = await start_gateway(tmp_path, cfg)
    try:
        yield gw
    finally:
        gw.stop()


async def deliveries(gw: GatewayProc, ep: str) -> list[dict[str, Any]]:
    status, body = await gw.admin("GET", f"/admin/v1/webhooks/{ep}/deliveries")
    assert status == 200, body
    return list(body["data"])


async def test_a_signed_delivery_retried_until_it_lands(hooked: GatewayProc, receiver: Receiver) -> None:
    status, ep = await hooked.admin(
        "POST", "/admin/v1/webhooks", {"url": receiver.url, "events": ["key.expiring"]}
    )
    assert status == 201, ep
    assert ep["secret"].startswith("whsec_")
    receiver.answers = [500]
    assert (await hooked.admin("POST", f"/admin/v1/webhooks/{ep['id']}/test"))[0] == 202

    async def landed() -> list[dict[str, Any]]:
        ds = await deliveries(hooked, ep["id"])
        return ds if ds and ds[0]["state"] == "delivered" else []

    (d,) = await wait_until(landed, timeout=10)
    assert d["attempts"] == 2 and d["event_type"] == "webhook.test"
    assert len(receiver.got) == 2
    (h1, _), (h2, b2) = receiver.got
    assert h1["webhook-id"] == h2["webhook-id"] == d["id"]  # the same message id on every attempt
    verify(ep["secret"], h2, b2)
    assert orjson.loads(b2)["type"] == "webhook.test"

    # Rotation: both secrets sign for a while, so either verifies.
    status, rotated = await hooked.admin("POST", f"/admin/v1/webhooks/{ep['id']}/rotate-secret")
    assert status == 200 and rotated["secret"] != ep["secret"]
    receiver.got.clear()
    await hooked.admin("POST", f"/admin/v1/webhooks/{ep['id']}/test")
    await wait_until(lambda: _count(receiver, 1), timeout=10)
    h3, b3 = receiver.got[0]
    assert len(h3["webhook-signature"].split()) == 2
    verify(ep["secret"], h3, b3)
    verify(rotated["secret"], h3, b3)


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.got) >= n


async def test_410_disables_the_endpoint(hooked: GatewayProc, receiver: Receiver) -> None:
    _, ep = await hooked.admin("POST", "/admin/v1/webhooks", {"url": receiver.url})
    receiver.answers = [410]
    await hooked.admin("POST", f"/admin/v1/webhooks/{ep['id']}/test")

    async def disabled() -> bool:
        _, view = await hooked.admin("GET", f"/admin/v1/webhooks/{ep['id']}")
        return view["enabled"] is False

    assert await wait_until(disabled, timeout=10)
    (d,) = await deliveries(hooked, ep["id"])
    assert d["state"] == "cancelled" and d["last_status"] == 410
    status, log = await hooked.admin("GET", "/v1/audit-log?action=webhook.created")
    assert status == 200 and any(e["target"] == ep["id"] for e in log["data"])


async def test_private_addresses_are_refused_unless_allowed(gateway: GatewayProc) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "ftp://example.com/x",
    ):
        status, body = await gateway.admin("POST", "/admin/v1/webhooks", {"url": url})
        assert status == 400, (url, body)
        assert body["error"]["param"] == "url"


async def test_unknown_events_and_fields_are_refused(hooked: GatewayProc, receiver: Receiver) -> None:
    status, _ = await hooked.admin("POST", "/admin/v1/webhooks", {"url": receiver.url, "events": ["nope"]})
    assert status == 400
    status, _ = await hooked.admin("POST", "/admin/v1/webhooks", {"url": receiver.url, "colour": "red"})
    assert status == 400
    assert (await hooked.admin("GET", "/admin/v1/webhooks/wh_missing"))[0] == 404


async def test_delivery_survives_a_busy_endpoint_list(hooked: GatewayProc, receiver: Receiver) -> None:
    """Several endpoints: one event is queued once for each of them."""
    ids = []
    for _ in range(3):
        _, ep = await hooked.admin(
            "POST", "/admin/v1/webhooks", {"url": receiver.url, "events": ["webhook.test"]}
        )
        ids.append(ep["id"])
    receiver.got.clear()
    await asyncio.gather(*(hooked.admin("POST", f"/admin/v1/webhooks/{i}/test") for i in ids))
    await wait_until(lambda: _count(receiver, 3), timeout=10)
    await asyncio.sleep(0.3)
    assert len(receiver.got) == 3
