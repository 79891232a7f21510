"""GET /v1/openapi.json, and schema-driven fuzzing of the gateway against it (schemathesis).

The fuzz run is bounded in time (``FUZZ_SECONDS`` per half) and deterministic (fixed seed). It
fails on any 5xx, any answer that violates the document, or a wrong content type. Webhook
registration and test sends are left out: fuzzed URLs may name public hosts, and this machine
must send nothing outside itself.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from stellargate.openapi import OPERATION_IDS, document
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import ADMIN_KEY, GatewayProc, start_gateway
from tests.unit.test_docs import _routes

pytestmark = pytest.mark.asyncio(loop_scope="session")
FUZZ_SECONDS = 15
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


async def test_the_document_is_openapi_3_1_and_names_every_route(gateway: GatewayProc) -> None:
    async with aiohttp.ClientSession() as s, s.get(gateway.v1 + "/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for p in ("/v1/chat/completions", "/v1/messages", "/v1/audit-log", "/admin/v1/keys", "/admin/v1/webhooks",
              "/admin/v1/reload", "/metrics"):  # fmt: skip
        assert p in paths, p
    chat = paths["/v1/chat/completions"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in chat["parameters"])
    assert "default" in chat["responses"]  # the error shape


async def test_every_operation_is_named_and_every_post_takes_an_idempotency_key() -> None:
    doc = document(["gpt-4o"])
    ops = [(m, p, o) for p, item in doc["paths"].items() for m, o in item.items()]
    unnamed = [f"{m} {p}" for m, p, _ in ops if (m, p) not in OPERATION_IDS]
    assert not unnamed, f"name these operations in openapi.OPERATION_IDS: {unnamed}"
    assert len({o["operationId"] for _, _, o in ops}) == len(ops)
    posts = {p for m, p, o in ops if m == "post"}
    for m, p, o in ops:
        if m == "post":
            assert [x["name"] for x in o["parameters"]].count("Idempotency-Key") == 1, p
    # Every POST route the source registers by a literal path is in the document.
    served = {p for m, p in _routes() if m == "POST"}
    assert served and served <= posts, served - posts


async def _fuzz(
    gw: GatewayProc, tmp: Path, headers: dict[str, str], include: str, exclude: str
) -> tuple[int, str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis is not installed (it is a dev dependency)")
    args = [exe, "run", gw.v1 + "/openapi.json", "-c", CHECKS, "-n", "10", "--max-time", str(FUZZ_SECONDS),
            "--seed", "7", "--no-color", "--request-timeout", "10", "--include-path-regex", include,
            "--exclude-path-regex", exclude, "--report-dir", str(tmp)]  # fmt: skip
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp
    )
    out, _ = await asyncio.wait_for(proc.communicate(), FUZZ_SECONDS + 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_document(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    cfg = {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": "gpt-4o", "provider": "fake", "completions": "chat"}],
    }
    gw = await start_gateway(tmp_path / "gw", cfg)
    try:
        _, key = await gw.create_key("fuzz")
        public = {"Authorization": f"Bearer {key}", "x-api-key": key, "x-goog-api-key": key}
        rc, out = await _fuzz(gw, tmp_path, public, "^/(v1|v1beta|llm|$)", "^/(admin|v1/audit-log)")
        assert rc == 0, out[-6000:]
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        rc, out = await _fuzz(gw, tmp_path, admin, "^/(admin|v1/audit-log)", "^/admin/v1/webhooks$|/test$")
        assert rc == 0, out[-6000:]
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()
