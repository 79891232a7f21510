"""The audit log through the real gateway: admin actions, auth failures, filters, cursor, access."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from tests.harness import GatewayProc, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def get_log(gw: GatewayProc, token: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.url + "/v1/audit-log", params=params, headers={"authorization": f"Bearer {token}"}) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_key_actions_are_audited_in_order(gateway: GatewayProc) -> None:
    since = time.time() - 1
    kid, _ = await gateway.create_key("audited")
    assert (await gateway.admin("PATCH", f"/admin/v1/keys/{kid}", {"name": "renamed"}))[0] == 200
    assert (await gateway.admin("POST", f"/admin/v1/keys/{kid}/rotate"))[0] == 200
    assert (await gateway.admin("POST", f"/admin/v1/keys/{kid}/revoke"))[0] == 200
    status, body = await get_log(gateway, gateway.admin_key, target=kid, since=str(since))
    assert status == 200, body
    actions = [e["action"] for e in body["data"]]
    assert actions == ["key.revoked", "key.rotated", "key.updated", "key.created"]
    first = body["data"][-1]
    assert first["actor"] == "admin" and first["object"] == "audit_event"
    assert first["time"].endswith("Z")
    datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert "key" not in first["details"] and first["details"]["prefix"].startswith("sg-")


async def test_auth_failures_are_audited_by_prefix_and_address(gateway: GatewayProc) -> None:
    bogus = "sg-" + uuid.uuid4().hex[:8] + "x" * 38
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(
                gateway.v1 + "/chat/completions", json={}, headers={"authorization": f"Bearer {bogus}"}
            ) as r:
                assert r.status == 401

    async def found() -> list[Any]:
        _, body = await get_log(gateway, gateway.admin_key, action="auth.failed", actor=bogus[:11])
        return list(body["data"]) if len(body["data"]) == 3 else []

    events = await wait_until(found, timeout=5)
    assert {e["source"] for e in events} == {"127.0.0.1"}
    assert events[0]["target"] == "/v1/chat/completions"
    assert bogus not in str(events)  # only the display prefix is written down


async def test_cursor_pagination(gateway: GatewayProc) -> None:
    since = time.time() - 0.5
    tag = uuid.uuid4().hex
    for i in range(5):
        await gateway.create_key(f"page-{tag}-{i}")
    ids: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"action": "key.created", "since": str(since), "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        status, body = await get_log(gateway, gateway.admin_key, **params)
        assert status == 200
        ids += [e["id"] for e in body["data"]]
        cursor = body["next_cursor"]
        assert body["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert len(ids) >= 5 and len(ids) == len(set(ids))
    assert (await get_log(gateway, gateway.admin_key, cursor="nope"))[0] == 400


async def test_only_admin_or_audit_read_keys_may_read(gateway: GatewayProc) -> None:
    _, everything = await gateway.create_key("wildcard")
    _, reader = await gateway.create_key("auditor", scopes=["audit:read"])
    assert (await get_log(gateway, everything))[0] == 403
    assert (await get_log(gateway, reader))[0] == 200
    assert (await get_log(gateway, "sg-wrong"))[0] == 401


async def test_the_log_cannot_be_written_through_the_api(gateway: GatewayProc) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, gateway.url + "/v1/audit-log", headers=gateway.admin_headers()) as r,
        ):
            assert r.status == 405
