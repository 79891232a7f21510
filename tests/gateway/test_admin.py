"""The admin API (keys, usage) and the usage ledger, through the real gateway."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import openai
import pytest

from tests.harness import GatewayProc, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
MSG = [{"role": "user", "content": "count these five words"}]


async def test_admin_requires_the_admin_key(gateway: GatewayProc, api_key: str) -> None:
    async with aiohttp.ClientSession() as s:
        for h in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {api_key}"}):
            async with s.get(gateway.url + "/admin/v1/keys", headers=h) as r:
                assert r.status == 401
                body = await r.json()
                assert body["error"]["type"] == "authentication_error"


async def test_key_lifecycle(gateway: GatewayProc) -> None:
    status, created = await gateway.admin(
        "POST",
        "/admin/v1/keys",
        {
            "name": "svc-a",
            "models": ["gpt-*"],
            "scopes": ["chat", "models"],
            "expires_in": "30d",
            "metadata": {"team": "search"},
        },
    )
    assert status == 201
    secret = created["key"]
    assert secret.startswith("sg-")
    assert created["prefix"] == secret[:11]
    assert created["status"] == "active"
    assert 29.9 * 86400 < created["expires_at"] - time.time() <= 30 * 86400
    assert "key_hash" not in created

    status, got = await gateway.admin("GET", f"/admin/v1/keys/{created['id']}")
    assert status == 200
    assert "key" not in got, "the secret is shown once, at creation"
    assert got["metadata"] == {"team": "search"}

    status, upd = await gateway.admin(
        "PATCH", f"/admin/v1/keys/{created['id']}", {"name": "svc-b", "enabled": False}
    )
    assert (status, upd["name"], upd["status"]) == (200, "svc-b", "disabled")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "key_disabled"
    await gateway.admin("PATCH", f"/admin/v1/keys/{created['id']}", {"enabled": True})
    await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]

    status, rot = await gateway.admin("POST", f"/admin/v1/keys/{created['id']}/rotate")
    assert status == 200
    assert rot["key"] != secret
    assert rot["id"] == created["id"]
    with pytest.raises(openai.AuthenticationError):
        await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    await c.close()
    c2 = openai.AsyncOpenAI(base_url=gateway.v1, api_key=rot["key"], max_retries=0)
    await c2.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    status, rev = await gateway.admin("DELETE", f"/admin/v1/keys/{created['id']}")
    assert (status, rev["status"]) == (200, "revoked")
    with pytest.raises(openai.AuthenticationError):
        await c2.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    await c2.close()
    status, _ = await gateway.admin("POST", f"/admin/v1/keys/{created['id']}/rotate")
    assert status == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "models": "gpt"},
        {"name": "x", "expires_in": "soon"},
        {"name": "x", "bogus": 1},
    ],
)
async def test_create_key_validation(gateway: GatewayProc, body: dict[str, Any]) -> None:
    status, err = await gateway.admin("POST", "/admin/v1/keys", body)
    assert status == 400, err
    assert err["error"]["type"] == "invalid_request_error"


async def test_unknown_key_is_404(gateway: GatewayProc) -> None:
    for method, path in [("GET", ""), ("PATCH", ""), ("POST", "/revoke"), ("POST", "/rotate")]:
        status, err = await gateway.admin(
            method, f"/admin/v1/keys/key_nope{path}", {} if method == "PATCH" else None
        )
        assert status == 404, (method, path)
        assert err["error"]["code"] == "key_not_found"


async def test_list_keys_with_cursor_pagination(gateway: GatewayProc) -> None:
    made = {(await gateway.create_key(f"page-{i}"))[0] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        q = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await gateway.admin("GET", "/admin/v1/keys" + q)
        assert status == 200
        assert len(page["data"]) <= 3
        seen.extend(k["id"] for k in page["data"])
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert made <= set(seen)
    assert len(seen) == len(set(seen))
    status, _ = await gateway.admin("GET", "/admin/v1/keys?cursor=garbage")
    assert status == 400
    status, _ = await gateway.admin("GET", "/admin/v1/keys?limit=0")
    assert status == 400


async def test_every_request_leaves_one_usage_record(gateway: GatewayProc) -> None:
    kid, key = await gateway.create_key("ledger")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    r = await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    stream = await c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)  # type: ignore[arg-type]
    async for _ in stream:
        pass
    with pytest.raises(openai.NotFoundError):
        await c.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]
    await c.close()

    async def records() -> list[dict[str, Any]]:
        _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"] if len(body["data"]) >= 3 else []

    recs = await wait_until(records, timeout=10)
    assert len(recs) == 3
    by_status = sorted(recs, key=lambda x: (x["status"], x["streamed"]))
    ok_plain, ok_stream, missing = by_status
    assert r.usage is not None
    assert ok_plain["prompt_tokens"] == r.usage.prompt_tokens
    assert ok_plain["completion_tokens"] == r.usage.completion_tokens
    expected_cost = (r.usage.prompt_tokens * 2.5 + r.usage.completion_tokens * 10.0) / 1e6
    assert ok_plain["cost_usd"] == pytest.approx(expected_cost)
    assert ok_plain["provider"] == "fake"
    assert ok_plain["upstream_model"] == "gpt-4o"
    assert ok_plain["latency_ms"] > 0
    assert not ok_plain["streamed"]
    # The client did not ask for usage in the stream; it is metered all the same.
    assert ok_stream["streamed"]
    assert ok_stream["completion_tokens"] == r.usage.completion_tokens
    assert ok_stream["prompt_tokens"] == r.usage.prompt_tokens
    assert ok_stream["ttft_ms"] is not None
    assert not ok_stream["usage_estimated"]
    assert (missing["status"], missing["error_code"]) == (404, "model_not_found")
    assert len({x["request_id"] for x in recs}) == 3


async def test_usage_filters_grouping_and_pagination(gateway: GatewayProc) -> None:
    kid, key = await gateway.create_key("grouping")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    t0 = time.time()
    for model in ["gpt-4o", "gpt-4o", "mini"]:
        await c.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    await c.close()

    async def grouped() -> list[dict[str, Any]]:
        _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}&group_by=model")
        return body["data"] if sum(g["requests"] for g in body["data"]) >= 3 else []

    groups = {g["group"]: g for g in await wait_until(grouped)}
    assert groups["gpt-4o"]["requests"] == 2
    assert groups["mini"]["requests"] == 1
    _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}&model=mini")
    assert [x["model"] for x in body["data"]] == ["mini"]
    _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}&limit=2")
    assert len(body["data"]) == 2
    assert body["next_cursor"]
    _, body2 = await gateway.admin(
        "GET", f"/admin/v1/usage?key_id={kid}&limit=2&cursor={body['next_cursor']}"
    )
    assert len(body2["data"]) == 1
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 5)) + "Z"
    _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}&since={since}&group_by=day")
    assert body["data"][0]["group"] == time.strftime("%Y-%m-%d", time.gmtime())
    _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}&until={t0 - 3600}")
    assert body["data"] == []
    status, _ = await gateway.admin("GET", "/admin/v1/usage?group_by=color")
    assert status == 400
    status, _ = await gateway.admin("GET", "/admin/v1/usage?since=yesterday")
    assert status == 400


async def test_health_and_readiness(gateway: GatewayProc) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(gateway.url + "/healthz") as r:
            assert r.status == 200
        async with s.get(gateway.url + "/readyz") as r:
            body = await r.json()
            assert r.status == 200
            assert body["checks"] == {"database": "ok", "migrations": "current"}


async def test_models_list_shape(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["gpt-4o", "mini", "slow", "down", "badauth"]
    m = await client.models.retrieve("gpt-4o")
    assert m.owned_by == "fake"
    assert m.model_extra is not None
    assert m.model_extra["context_window"] == 128000


async def test_unconfigured_models_are_priced_from_the_bundled_table(gateway: GatewayProc) -> None:
    kid, key = await gateway.create_key("bundled-prices")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    r = await c.chat.completions.create(model="fake/gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    await c.close()
    assert r.usage is not None

    async def record() -> Any:
        _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"][0] if body["data"] else None

    rec = await wait_until(record)
    assert rec["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * 0.15 + r.usage.completion_tokens * 0.60) / 1e6
    )
    assert "unpriced" not in rec["meta"]
