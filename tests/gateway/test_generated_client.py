"""A Python client generated from the served /v1/openapi.json works against the real gateway.

openapi-python-client (a dev dependency; it reads OpenAPI 3.1) generates a package from the
document the gateway serves, into tmp_path, with no post-generation hooks (about a second). The
test imports it and makes the calls a client would: list models, a chat completion, admin create /
list / revoke key with an Idempotency-Key, an audit log page, and an error parsed into the
documented error model. A wrong schema shows up as a parse failure or a wrong type here.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.harness import ADMIN_KEY, GatewayProc

pytestmark = pytest.mark.asyncio(loop_scope="session")
GENERATE_SECONDS = 60


async def _generate(gateway: GatewayProc, out: Path) -> None:
    exe = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("openapi-python-client is not installed (it is a dev dependency)")
    async with aiohttp.ClientSession() as s, s.get(gateway.v1 + "/openapi.json") as r:
        assert r.status == 200
        doc = await r.read()
    work = out.parent
    (work / "openapi.json").write_bytes(doc)
    (work / "generator.yaml").write_text("post_hooks: []\n")  # no formatter runs: seconds, no cache
    proc = await asyncio.create_subprocess_exec(
        exe, "generate", "--path", str(work / "openapi.json"), "--output-path", str(out),
        "--meta", "none", "--config", str(work / "generator.yaml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=work,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), GENERATE_SECONDS)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    # The generator reports what it could not turn into code as warnings; there must be none.
    assert "Warning" not in text and "Unable" not in text, text


@pytest.fixture
def import_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("sg_client_")]:
            del sys.modules[name]


def _load(package: str) -> dict[str, ModuleType]:
    return {
        name: importlib.import_module(f"{package}.{name}")
        for name in (
            "client",
            "types",
            "models",
            "api.admin.create_key",
            "api.admin.list_keys",
            "api.admin.revoke_key",
            "api.audit.list_audit_events",
            "api.models.list_models",
            "api.models.create_chat_completion",
        )
    }


def _m(mods: dict[str, ModuleType], name: str) -> Any:
    return getattr(mods["models"], name)


async def test_a_generated_client_works_against_the_gateway(gateway: GatewayProc, import_path: Path) -> None:
    package = "sg_client_" + uuid.uuid4().hex[:8]
    await _generate(gateway, import_path / package)
    mods = _load(package)
    async with AsyncExitStack() as stack:
        await _use(gateway, mods, stack)


async def _use(gateway: GatewayProc, mods: dict[str, ModuleType], stack: AsyncExitStack) -> None:
    def client(token: str) -> Any:
        c = mods["client"].AuthenticatedClient(base_url=gateway.url, token=token, timeout=20)
        return stack.enter_async_context(c)

    admin = await client(ADMIN_KEY)
    name, idem = f"generated-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

    # Admin: create a key (twice with one Idempotency-Key: the same key comes back, replayed).
    create_key = mods["api.admin.create_key"]
    body = _m(mods, "ApiKeyCreate")(name=name, scopes=[_m(mods, "ApiKeyCreateScopesItem")("*")])
    first = await create_key.asyncio_detailed(client=admin, body=body, idempotency_key=idem)
    again = await create_key.asyncio_detailed(client=admin, body=body, idempotency_key=idem)
    assert first.status_code == 201, first.content
    created = first.parsed
    assert isinstance(created, _m(mods, "ApiKey"))
    assert created.name == name and created.status == _m(mods, "ApiKeyStatus").ACTIVE
    assert created.key.startswith("sg-")
    assert again.status_code == 201 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parsed.id == created.id and again.parsed.key == created.key

    # Admin: the key is listed (paged with the cursor the document describes), once.
    list_keys = mods["api.admin.list_keys"]
    found, cursor = [], None
    for _ in range(50):
        page = await list_keys.asyncio(client=admin, limit=200, cursor=cursor or mods["types"].UNSET)
        assert isinstance(page, _m(mods, "ApiKeyList")), page
        found += [k for k in page.data if k.name == name]
        cursor = page.next_cursor
        if not page.has_more:
            break
    assert [k.id for k in found] == [created.id]

    # Public API with the new key: the models list and a chat completion.
    public = await client(created.key)
    models = await mods["api.models.list_models"].asyncio(client=public)
    assert isinstance(models, _m(mods, "ModelList")), models
    assert "gpt-4o" in [m.id for m in models.data]
    chat = mods["api.models.create_chat_completion"]
    message = _m(mods, "ChatCompletionRequestMessagesItem")(
        role=_m(mods, "ChatCompletionRequestMessagesItemRole").USER, content="Say hello"
    )
    request = _m(mods, "ChatCompletionRequest")(model="gpt-4o", messages=[message])
    answer = await chat.asyncio(client=public, body=request)
    assert isinstance(answer, _m(mods, "ChatCompletion")), answer
    assert answer.choices[0].message.role == "assistant"
    assert isinstance(answer.choices[0].message.content, str) and answer.choices[0].message.content
    assert answer.usage.total_tokens > 0

    # An error answer parses into the documented error model.
    wrong = await client("sg-not-a-key")
    refused = await chat.asyncio_detailed(client=wrong, body=request)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, _m(mods, "OpenAIError"))
    assert refused.parsed.error.code == "invalid_api_key" and refused.parsed.error.message

    # Admin: revoke it, then find the creation in the audit log.
    revoked = await mods["api.admin.revoke_key"].asyncio(client=admin, key_id=created.id)
    assert isinstance(revoked, _m(mods, "ApiKey")), revoked
    assert revoked.status == _m(mods, "ApiKeyStatus").REVOKED
    events = await mods["api.audit.list_audit_events"].asyncio(
        client=admin, action="key.created", target=created.id, limit=10
    )
    assert isinstance(events, _m(mods, "AuditEventList")), events
    assert [e.target for e in events.data] == [created.id]  # created once, though asked twice
    assert events.data[0].actor == "admin"

    # And an admin error: an unknown key is a 404 in the same error model.
    missing = await mods["api.admin.revoke_key"].asyncio_detailed(client=admin, key_id="key_nope")
    assert missing.status_code == 404
    assert isinstance(missing.parsed, _m(mods, "OpenAIError"))
