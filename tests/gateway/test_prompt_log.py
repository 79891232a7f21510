"""The per-key prompt-logging switch (issue #7) through the real gateway, with JSON logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import gateway_config
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
UPSTREAM_SECRET = "sk-proj-ABCDEFGHIJKLMNOP1234"  # a provider key a user pasted into a prompt


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    cfg = {**gateway_config(upstream), "log_format": "json"}
    g = await start_gateway(tmp_path_factory.mktemp("prompt-log"), cfg)
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def on_key(gw: GatewayProc) -> tuple[str, str]:
    return await gw.create_key("logged", log_prompts=True)


def marker() -> str:
    return "mk" + uuid.uuid4().hex


def prompt_records(gw: GatewayProc) -> list[dict[str, Any]]:
    out = []
    for line in gw.log().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("logger") == "stellargate.prompts":
            out.append(obj)
    return out


async def record_of(gw: GatewayProc, request_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return next((r for r in prompt_records(gw) if r.get("request_id") == request_id), None)

    rec: dict[str, Any] = await wait_until(found, timeout=10)
    return rec


async def chat(
    gw: GatewayProc, key: str, text: str, *, stream: bool = False, model: str = "gpt-4o"
) -> tuple[str, int, str]:
    """(request id, status, the answer's text) of one chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r,
    ):
        raw = await r.read()
        rid = r.headers["x-request-id"]
        if r.status != 200:
            return rid, r.status, ""
        if not stream:
            return rid, r.status, json.loads(raw)["choices"][0]["message"]["content"]
        parts = []
        for line in raw.decode().splitlines():
            if line.startswith("data: {"):
                for c in json.loads(line[6:])["choices"]:
                    parts.append(c["delta"].get("content") or "")
        return rid, r.status, "".join(parts)


async def barrier(gw: GatewayProc, on_key: tuple[str, str]) -> None:
    """A logged request, waited for: the requests made before it have had their chance to log."""
    rid, _, _ = await chat(gw, on_key[1], "barrier " + marker())
    await record_of(gw, rid)


async def test_a_switched_on_key_has_its_prompt_and_completion_logged(
    gw: GatewayProc, on_key: tuple[str, str]
) -> None:
    kid, key = on_key
    status, view = await gw.admin("GET", f"/admin/v1/keys/{kid}")
    assert (status, view["log_prompts"]) == (200, True)
    m = marker()
    rid, status, answer = await chat(gw, key, f"remember {m} and {UPSTREAM_SECRET}")
    assert status == 200 and m in answer
    rec = await record_of(gw, rid)
    assert (rec["level"], rec["key_id"], rec["dialect"], rec["endpoint"]) == ("info", kid, "openai", "chat")
    assert (rec["model"], rec["provider"], rec["status"], rec["streamed"]) == ("gpt-4o", "fake", 200, False)
    [msg] = rec["prompt"]["messages"]
    assert msg["role"] == "user" and m in msg["content"]
    assert len(rec["completion"]) == 1 and m in rec["completion"][0]
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] > 0
    # The secret is masked in the prompt and in the completion that echoed it, like in every line.
    assert UPSTREAM_SECRET not in gw.log()
    assert "sk-pro***" in msg["content"]


async def test_a_stream_is_logged_when_it_ends(gw: GatewayProc, on_key: tuple[str, str]) -> None:
    m = marker()
    rid, status, answer = await chat(gw, on_key[1], f"stream {m} back in several chunks please", stream=True)
    assert status == 200 and m in answer
    rec = await record_of(gw, rid)
    assert rec["streamed"] is True
    assert rec["completion"] == [answer]


async def test_a_switched_off_key_never_has_its_text_in_the_logs(
    gw: GatewayProc, on_key: tuple[str, str]
) -> None:
    _, key = await gw.create_key("quiet")
    m = marker()
    assert (await chat(gw, key, f"plain {m}"))[1] == 200
    assert (await chat(gw, key, f"stream {m}", stream=True))[1] == 200
    assert (await chat(gw, key, f"failing {m}", model="down"))[1] >= 500
    await barrier(gw, on_key)
    assert m not in gw.log()


async def test_a_refused_call_is_logged_with_its_error(gw: GatewayProc, on_key: tuple[str, str]) -> None:
    m = marker()
    rid, status, _ = await chat(gw, on_key[1], f"to nowhere {m}", model="down")
    assert status >= 500
    rec = await record_of(gw, rid)
    assert rec["status"] == status and rec["error_code"]
    assert m in rec["prompt"]["messages"][0]["content"] and rec["completion"] == []


async def test_switching_on_and_off_applies_to_the_next_request_and_is_audited(
    gw: GatewayProc, on_key: tuple[str, str]
) -> None:
    kid, key = await gw.create_key("toggled")
    before = marker()
    assert (await chat(gw, key, before))[1] == 200

    status, view = await gw.admin("PATCH", f"/admin/v1/keys/{kid}", {"log_prompts": True})
    assert (status, view["log_prompts"]) == (200, True)
    during = marker()
    rid, _, _ = await chat(gw, key, during)
    rec = await record_of(gw, rid)
    assert rec["key_id"] == kid and during in rec["completion"][0]

    status, view = await gw.admin("PATCH", f"/admin/v1/keys/{kid}", {"log_prompts": False})
    assert (status, view["log_prompts"]) == (200, False)
    after = marker()
    assert (await chat(gw, key, after, stream=True))[1] == 200
    await barrier(gw, on_key)
    log = gw.log()
    assert before not in log and after not in log

    async with (
        aiohttp.ClientSession() as s,
        s.get(
            gw.v1 + "/audit-log",
            params={"target": kid, "action": "key.updated"},
            headers=gw.admin_headers(),
        ) as r,
    ):
        events = (await r.json())["data"]
    changes = [e["details"]["log_prompts"] for e in reversed(events)]
    assert changes == [{"from": False, "to": True}, {"from": True, "to": False}]
    assert all(e["details"]["fields"] == ["log_prompts"] and e["actor"] == "admin" for e in events)


async def test_creation_with_the_switch_is_audited_and_bad_values_are_refused(gw: GatewayProc) -> None:
    kid, _ = await gw.create_key("audited-on", log_prompts=True)
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.v1 + "/audit-log", params={"target": kid}, headers=gw.admin_headers()) as r,
    ):
        [created] = (await r.json())["data"]
    assert created["action"] == "key.created" and created["details"]["log_prompts"] is True
    status, body = await gw.admin("POST", "/admin/v1/keys", {"name": "x", "log_prompts": "yes"})
    assert (status, body["error"]["param"]) == (400, "log_prompts")
    status, body = await gw.admin("PATCH", f"/admin/v1/keys/{kid}", {"log_prompts": 1})
    assert (status, body["error"]["param"]) == (400, "log_prompts")


async def test_other_dialects_are_logged_in_the_same_shape(gw: GatewayProc, on_key: tuple[str, str]) -> None:
    """An Anthropic client on an OpenAI model (the translated path), streamed."""
    m = marker()
    body = {
        "model": "gpt-4o",
        "max_tokens": 100,
        "system": "be brief",
        "stream": True,
        "messages": [{"role": "user", "content": f"anthropic {m}"}],
    }
    headers = {"x-api-key": on_key[1], "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as s, s.post(gw.v1 + "/messages", json=body, headers=headers) as r:
        assert r.status == 200
        rid = r.headers["x-request-id"]
        text = ""
        for line in (await r.text()).splitlines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev["type"] == "content_block_delta" and ev["delta"]["type"] == "text_delta":
                    text += ev["delta"]["text"]
    assert m in text
    rec = await record_of(gw, rid)
    assert rec["dialect"] == "anthropic" and rec["streamed"] is True
    assert rec["prompt"]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": f"anthropic {m}"},
    ]
    assert rec["completion"] == [text]


async def test_switching_on_reaches_every_worker_on_the_next_request(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    cfg = {**gateway_config(upstream), "log_format": "json", "redis": "redis://127.0.0.1:6379/0"}
    g = await start_gateway(tmp_path, cfg, workers=2)
    try:
        kid, key = await g.create_key("two-workers")
        quiet = marker()
        # Each on its own connection, so they spread over the workers and both cache the key.
        results = await asyncio.gather(*(chat(g, key, f"{quiet} {i}") for i in range(24)))
        assert [status for _, status, _ in results] == [200] * 24
        assert (await g.admin("PATCH", f"/admin/v1/keys/{kid}", {"log_prompts": True}))[0] == 200
        loud = marker()
        results = await asyncio.gather(*(chat(g, key, f"{loud} {i}") for i in range(24)))
        for rid, status, _ in results:
            assert status == 200
            assert loud in (await record_of(g, rid))["prompt"]["messages"][0]["content"]
        assert quiet not in g.log()
    finally:
        g.stop()


async def test_the_config_can_forbid_it_for_every_key(upstream: FakeOpenAI, tmp_path: Path) -> None:
    cfg = {**gateway_config(upstream), "log_format": "json", "prompt_logging": "off"}
    g = await start_gateway(tmp_path, cfg)
    try:
        kid, key = await g.create_key("wants-it", log_prompts=True)
        m = marker()
        assert (await chat(g, key, m))[1] == 200
        assert (await chat(g, key, m, stream=True))[1] == 200

        async def metered() -> bool:
            _, body = await g.admin("GET", f"/admin/v1/usage?key_id={kid}")
            return len(body["data"]) == 2  # both calls have ended: a prompt record would be written

        await wait_until(metered)
        assert m not in g.log() and prompt_records(g) == []
    finally:
        g.stop()
