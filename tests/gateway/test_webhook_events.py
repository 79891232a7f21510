"""The key.expiring and deployment.ejected / deployment.recovered events end to end: the real
gateway, breakers tripped by fault-injecting fake upstreams, a real HTTP receiver that verifies
every delivery's Standard Webhooks signature as the README shows, and the payloads, one delivery
per transition, recovery only after the cooldown, and reloads that keep or replace a deployment.

Scan intervals are set short (``webhooks.key_expiry_interval``, ``webhooks.breaker_poll_interval``)
so each test takes seconds; every wait is bounded."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from stellargate.webhooks import WebhookVerificationError, verify
from tests.fakes._faults import fault_marker
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.breaker_helpers import chat, eject
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

COOLDOWN = 1.0
POLL = 0.2  # webhooks.breaker_poll_interval
SCAN = 1.0  # webhooks.key_expiry_interval
DEPLOYMENT_EVENTS = ["deployment.ejected", "deployment.recovered"]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float  # unix time of arrival

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.event["data"])


class Receiver:
    """A webhook receiver: one path per endpoint, each delivery kept with its arrival time."""

    def __init__(self) -> None:
        self.got: dict[str, list[Delivery]] = {}
        self.base = ""

    async def handle(self, req: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in req.headers.items()}
        got = Delivery(headers, await req.read(), time.time())
        self.got.setdefault(req.match_info["name"], []).append(got)
        return web.Response(status=204)

    def verified(self, name: str, secret: str) -> list[Delivery]:
        """The deliveries to ``name``, each checked as a receiver must before trusting it."""
        ds = self.got.get(name, [])
        for d in ds:
            verify(secret, d.headers, d.body)
            with pytest.raises(WebhookVerificationError):
                verify("whsec_" + "A" * 32, d.headers, d.body)  # the check does check
        return ds


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.base = f"http://127.0.0.1:{runner.addresses[0][1]}/hook/"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ups() -> AsyncIterator[list[FakeOpenAI]]:
    fakes = [FakeOpenAI(api_key=None, chunk_delay=0.001) for _ in range(2)]
    for f in fakes:
        await f.start()
    try:
        yield fakes
    finally:
        for f in fakes:
            await f.stop()


def _prov(up: FakeOpenAI) -> dict[str, Any]:
    return {"type": "openai", "base_url": up.base_url, "api_key": "sk-x"}


def _config(ups: list[FakeOpenAI]) -> dict[str, Any]:
    a, _ = ups
    return {
        "usage": {"flush_interval": 0.05},
        "limits": {"rps": "unlimited"},
        "routing": {
            "retries": 0,
            "breaker": {"failures": 2, "cooldown": COOLDOWN, "max_cooldown": 4, "min_requests": 1000},
        },
        "providers": {"flaky": _prov(a), "swap": _prov(a)},
        "models": [
            {"name": "flaky", "provider": "flaky", "model": "gpt-4o"},
            {"name": "swap", "provider": "swap", "model": "gpt-4o"},
        ],
        "webhooks": {
            "allow_private": True,
            "poll_interval": 0.1,
            "backoff_initial": 0.2,
            "breaker_poll_interval": POLL,
            "key_expiry_interval": SCAN,
        },
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(ups: list[FakeOpenAI], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    g = await start_gateway(tmp_path_factory.mktemp("webhook-events"), _config(ups))
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gw: GatewayProc) -> str:
    return (await gw.create_key("webhook-events"))[1]


async def register(gw: GatewayProc, receiver: Receiver, name: str, events: list[str]) -> str:
    status, ep = await gw.admin("POST", "/admin/v1/webhooks", {"url": receiver.base + name, "events": events})
    assert status == 201, ep
    return str(ep["secret"])


async def arrived(receiver: Receiver, name: str, n: int, timeout: float = 10.0) -> list[Delivery]:
    async def enough() -> list[Delivery]:
        ds = receiver.got.get(name, [])
        return ds if len(ds) >= n else []

    await wait_until(enough, timeout=timeout, interval=0.05)
    return receiver.got[name]


async def served_again(gw: GatewayProc, key: str, model: str) -> float:
    """Unix time of the first 200: requests are refused (503) until the cooldown lets a probe by."""

    async def ok() -> float:
        return time.time() if await chat(gw, key, model) == 200 else 0.0

    t: float = await wait_until(ok, timeout=15, interval=0.1)
    return t


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def deployment(gw: GatewayProc, did: str) -> dict[str, Any]:
    status, body = await gw.admin("GET", "/admin/v1/deployments")
    assert status == 200, body
    (d,) = [d for d in body["data"] if d["id"] == did]
    return dict(d)


async def test_ejections_and_recoveries_are_each_delivered_once(
    gw: GatewayProc, receiver: Receiver, key: str
) -> None:
    secret = await register(gw, receiver, "breaker", DEPLOYMENT_EVENTS)
    assert await chat(gw, key, "flaky") == 200

    await eject(gw, key, "flaky")
    (ejected,) = await arrived(receiver, "breaker", 1)
    assert ejected.type == "deployment.ejected"
    first = ejected.data
    assert first["deployment"] == "flaky/gpt-4o" and first["provider"] == "flaky"
    assert first["upstream_model"] == "gpt-4o"
    assert first["cooldown_s"] == COOLDOWN and first["ejections"] == 1
    assert abs(unix(first["ejected_at"]) - time.time()) < 10

    back = await served_again(gw, key, "flaky")  # the probe after the cooldown succeeds
    assert back - unix(first["ejected_at"]) >= COOLDOWN - 0.05
    _, recovered = await arrived(receiver, "breaker", 2)
    assert recovered.type == "deployment.recovered"
    assert recovered.data["ejected_at"] == first["ejected_at"]  # which ejection it ends
    assert recovered.data["reason"] == "probe_succeeded" and recovered.data["deployment"] == "flaky/gpt-4o"
    assert recovered.at - unix(first["ejected_at"]) >= COOLDOWN - 0.05

    # A second incident in the same minute is a new event (a per-minute dedupe swallowed it);
    # its first probe fails, which lengthens the ejection without another event.
    await eject(gw, key, "flaky")
    await arrived(receiver, "breaker", 3)
    second = receiver.got["breaker"][2].data
    assert second["ejections"] == 1 and second["ejected_at"] != first["ejected_at"]

    async def failed_probe() -> bool:
        return await chat(gw, key, "flaky", fault_marker("status=500")) != 503

    await wait_until(failed_probe, timeout=10, interval=0.1)
    view = await deployment(gw, "flaky/gpt-4o")
    assert view["state"] == "open" and view["ejections"] == 2 and view["cooldown_s"] == 2 * COOLDOWN
    back = await served_again(gw, key, "flaky")
    assert back - unix(second["ejected_at"]) >= 3 * COOLDOWN - 0.05  # 1 s, a failed probe, 2 s
    await arrived(receiver, "breaker", 4)

    await asyncio.sleep(4 * POLL)  # more polls: nothing is reported twice
    ds = receiver.verified("breaker", secret)
    kinds = [d.type.removeprefix("deployment.") for d in ds]
    assert kinds == ["ejected", "recovered", "ejected", "recovered"]
    assert len({d.headers["webhook-id"] for d in ds}) == 4
    assert ds[3].data["ejected_at"] == second["ejected_at"]
    assert ds[3].at - unix(second["ejected_at"]) >= 3 * COOLDOWN - 0.05


async def test_breaker_events_across_config_reloads(
    gw: GatewayProc, ups: list[FakeOpenAI], receiver: Receiver, key: str
) -> None:
    secret = await register(gw, receiver, "reload", DEPLOYMENT_EVENTS)
    await eject(gw, key, "swap")
    (ejected,) = await arrived(receiver, "reload", 1)

    # An unrelated change keeps the deployment, ejected: no event (the watcher, keyed by id, saw
    # the rebuilt deployment as closed and reported a recovery that never happened).
    cfg = yaml.safe_load(gw.config_path.read_text())
    cfg["models"].append({"name": "extra", "provider": "flaky", "model": "gpt-4o-mini"})
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    status, body = await gw.admin("POST", "/admin/v1/reload")
    assert status == 200, body
    assert "swap/gpt-4o" in body["deployments"]["kept"]
    await asyncio.sleep(4 * POLL)
    assert len(receiver.got["reload"]) == 1
    assert (await deployment(gw, "swap/gpt-4o"))["ejections"] == 1

    # Moving it to another upstream starts it afresh: it serves at once, and is reported recovered.
    cfg["providers"]["swap"]["base_url"] = ups[1].base_url
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    status, body = await gw.admin("POST", "/admin/v1/reload")
    assert status == 200, body
    assert "swap/gpt-4o" in body["deployments"]["fresh"]
    _, recovered = await arrived(receiver, "reload", 2)
    assert recovered.type == "deployment.recovered"
    assert recovered.data["reason"] == "config_changed"
    assert recovered.data["ejected_at"] == ejected.data["ejected_at"]
    assert recovered.at - unix(ejected.data["ejected_at"]) < COOLDOWN * 10
    assert await chat(gw, key, "swap") == 200

    # The new deployment's own ejection is reported.
    await eject(gw, key, "swap")
    await arrived(receiver, "reload", 3)
    await asyncio.sleep(4 * POLL)
    ds = receiver.verified("reload", secret)
    assert [d.type for d in ds] == ["deployment.ejected", "deployment.recovered", "deployment.ejected"]
    assert ds[2].data["ejected_at"] != ejected.data["ejected_at"]


async def test_expiring_keys_are_announced_once_per_expiry(gw: GatewayProc, receiver: Receiver) -> None:
    secret = await register(gw, receiver, "expiry", ["key.expiring"])
    soon_id, _ = await gw.create_key("soon", expires_in="2d")
    later_id, _ = await gw.create_key("later", expires_in="30d")
    never_id, _ = await gw.create_key("never")
    revoked_id, _ = await gw.create_key("revoked", expires_in="1d")
    assert (await gw.admin("POST", f"/admin/v1/keys/{revoked_id}/revoke"))[0] == 200

    (d,) = await arrived(receiver, "expiry", 1, timeout=5 + 3 * SCAN)
    _, soon = await gw.admin("GET", f"/admin/v1/keys/{soon_id}")
    assert d.type == "key.expiring"
    assert set(d.data) == {"key_id", "name", "prefix", "expires_at"}
    assert (d.data["key_id"], d.data["name"], d.data["prefix"]) == (soon_id, "soon", soon["prefix"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d.data["expires_at"])
    assert abs(unix(d.data["expires_at"]) - soon["expires_at"]) < 1

    await asyncio.sleep(2.5 * SCAN)  # more scans: announced once
    assert len(receiver.got["expiry"]) == 1

    # A new expiry is a new announcement.
    status, patched = await gw.admin("PATCH", f"/admin/v1/keys/{soon_id}", {"expires_in": "3d"})
    assert status == 200, patched
    _, again = await arrived(receiver, "expiry", 2, timeout=5 * SCAN)
    assert again.data["key_id"] == soon_id
    assert abs(unix(again.data["expires_at"]) - patched["expires_at"]) < 1
    await asyncio.sleep(2.5 * SCAN)
    ds = receiver.verified("expiry", secret)
    assert [x.data["key_id"] for x in ds] == [soon_id, soon_id]
    assert not {later_id, never_id, revoked_id} & {x.data["key_id"] for x in ds}


async def test_one_delivery_per_transition_across_workers(
    ups: list[FakeOpenAI], receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two workers, ejections shared over Redis: both report each transition, one is delivered."""
    cfg = _config(ups)
    cfg["redis"] = "redis://127.0.0.1:6379/0"
    cfg["routing"]["redis_prefix"] = f"sgtest-{uuid.uuid4().hex[:10]}"  # no state from other runs
    g = await start_gateway(tmp_path_factory.mktemp("webhook-workers"), cfg, workers=2)
    try:
        secret = await register(g, receiver, "workers", DEPLOYMENT_EVENTS)
        _, k = await g.create_key("workers")
        for _ in range(12):  # one at a time, so the other worker hears of the ejection first
            if await chat(g, k, "flaky", fault_marker("status=500")) == 503:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("never ejected")
        await arrived(receiver, "workers", 1)
        await served_again(g, k, "flaky")
        await arrived(receiver, "workers", 2)
        for _ in range(5):  # the other worker serves too, without a second event
            assert await chat(g, k, "flaky") == 200
        await asyncio.sleep(4 * POLL)
        ds = receiver.verified("workers", secret)
        assert [d.type for d in ds] == DEPLOYMENT_EVENTS
        assert ds[0].data["ejected_at"] == ds[1].data["ejected_at"]
    finally:
        g.stop()
