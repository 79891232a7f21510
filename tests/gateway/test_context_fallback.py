"""Context-window fallback for every provider type, end to end, and the input tokens a translated
Anthropic stream states up front.

Each provider type gets two groups that fall back to ``big`` (an OpenAI fake with a large window):
``<p>-cw`` has a small ``context_window``, so the gateway's own (BPE) count sends a long prompt
straight to ``big``; ``<p>-up`` has none, so only the upstream's own overflow error can. The fakes
answer each provider's real overflow wording through the ``error=NAME`` fault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
Fake = FakeOpenAI | FakeAnthropic | FakeGemini
LONG = "word " * 200  # ~200 tokens by any count, over a window of 50
# OpenAI-compatible servers that word their overflow their own way (the OpenAI fake speaks for them).
COMPAT = ("vllm", "mistral", "groq", "deepseek", "llamacpp", "ollama")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fakes() -> AsyncIterator[dict[str, Fake]]:
    fs: dict[str, Fake] = {
        "oa": FakeOpenAI(api_key=None),
        "an": FakeAnthropic(api_key=None),
        "ge": FakeGemini(api_key=None),
        "big": FakeOpenAI(api_key=None),
    }
    for f in fs.values():
        await f.start()
    try:
        yield fs
    finally:
        for f in fs.values():
            await f.stop()


@pytest.fixture(autouse=True)
def _clean(fakes: dict[str, Fake]) -> Any:
    for f in fakes.values():
        f.clear_fault()
    yield
    for f in fakes.values():
        f.clear_fault()


def _config(fs: dict[str, Fake]) -> dict[str, Any]:
    upstream = {
        "oa": ("openai", "gpt-4o"),
        "an": ("anthropic", "claude-sonnet-4-6"),
        "ge": ("gemini", "gemini-2.0-flash"),
    }
    providers: dict[str, Any] = {
        p: {"type": t, "base_url": fs[p].base_url, "api_key": "k"} for p, (t, _) in upstream.items()
    }
    providers["big"] = {"type": "openai", "base_url": fs["big"].base_url, "api_key": "k"}
    for s in COMPAT:
        providers[s] = {"type": s, "base_url": fs["oa"].base_url, "api_key": "k"}
    models: list[dict[str, Any]] = [
        {"name": "big", "provider": "big", "model": "gpt-4o", "context_window": 100000}
    ]
    for p, (_, m) in upstream.items():
        models.append(
            {"name": f"{p}-cw", "provider": p, "model": m, "context_window": 50, "fallbacks": ["big"]}
        )
        models.append({"name": f"{p}-up", "provider": p, "model": m, "fallbacks": ["big"]})
    models += [{"name": f"{s}-up", "provider": s, "model": "m", "fallbacks": ["big"]} for s in COMPAT]
    models.append({"name": "tiny", "provider": "oa", "model": "gpt-4o", "context_window": 50})
    models.append({"name": "plain", "provider": "oa", "model": "gpt-4o"})
    return {
        "usage": {"flush_interval": 0.05},
        "routing": {"retries": 1, "backoff": {"base": 0.01, "max": 0.02},
                    "retry_budget": {"ratio": 0.2, "min": 1000},  # every test here is a fallback
                    "breaker": {"failures": 1000, "min_requests": 1000}},
        "providers": providers,
        "models": models,
    }  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(fakes: dict[str, Fake], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    g = await start_gateway(tmp_path_factory.mktemp("ctxfb"), _config(fakes))
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gw: GatewayProc) -> str:
    return (await gw.create_key("ctxfb"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


async def chat(
    s: aiohttp.ClientSession, gw: GatewayProc, key: str, model: str, content: str = "hello", **body: Any
) -> tuple[int, dict[str, str], dict[str, Any]]:
    payload = {"model": model, "messages": [{"role": "user", "content": content}], **body}
    async with s.post(
        gw.v1 + "/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
    ) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json()


async def record(gw: GatewayProc, request_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        _, b = await gw.admin("GET", "/admin/v1/usage?limit=1000")
        return next((r for r in b["data"] if r["request_id"] == request_id), None)

    rec: dict[str, Any] = await wait_until(find, timeout=5)
    return rec


# ------------------------------------------------------------------ (a) the gateway's own count


@pytest.mark.parametrize("p", ["oa", "an", "ge"])
async def test_a_prompt_over_the_window_goes_to_the_fallback_unsent(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, fakes: dict[str, Fake], p: str
) -> None:
    first, big = len(fakes[p].requests), len(fakes["big"].requests)
    status, h, body = await chat(http, gw, key, f"{p}-cw", LONG)
    assert status == 200, body
    assert (h["x-stellargate-model"], h["x-stellargate-attempts"]) == ("big", "1")
    assert len(fakes[p].requests) == first  # decided before sending anything
    assert len(fakes["big"].requests) == big + 1
    status, h, _ = await chat(http, gw, key, f"{p}-cw")  # a short prompt stays
    assert status == 200 and h["x-stellargate-model"] == f"{p}-cw"


async def test_the_window_is_judged_by_the_tokenizer_not_by_characters(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, fakes: dict[str, Fake]
) -> None:
    # 150 CJK characters: about 38 tokens at 4 characters a token (under the window of 50), well
    # over 50 by the BPE tokenizer.
    n = len(fakes["oa"].requests)
    status, h, body = await chat(http, gw, key, "oa-cw", "漢字" * 75)
    assert status == 200, body
    assert h["x-stellargate-model"] == "big" and len(fakes["oa"].requests) == n


async def test_no_larger_fallback_is_a_400_that_says_the_count_is_an_estimate(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str
) -> None:
    status, _, body = await chat(http, gw, key, "tiny", LONG)
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert "gateway estimates" in body["error"]["message"]


# ------------------------------------------------------------ (b) the upstream's own overflow error

OVERFLOWS = [
    ("oa-up", "oa", "overflow"),
    ("an-up", "an", "overflow"),
    ("an-up", "an", "overflow_max_tokens"),
    ("ge-up", "ge", "overflow"),
    *[(f"{s}-up", "oa", f"overflow_{s}") for s in COMPAT],
]


@pytest.mark.parametrize(("model", "p", "error"), OVERFLOWS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_overflow_error_falls_back(
    http: aiohttp.ClientSession,
    gw: GatewayProc,
    key: str,
    fakes: dict[str, Fake],
    model: str,
    p: str,
    error: str,
    stream: bool,
) -> None:
    fakes[p].set_fault(f"error={error}")
    first, big = len(fakes[p].requests), len(fakes["big"].requests)
    payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    async with http.post(
        gw.v1 + "/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
    ) as r:
        status, h, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()
    assert status == 200, raw
    assert (h["x-stellargate-model"], h["x-stellargate-attempts"]) == ("big", "2")
    # Not retried on the first model: an overflow is the same wherever that model is served.
    assert (len(fakes[p].requests) - first, len(fakes["big"].requests) - big) == (1, 1)
    rec = await record(gw, h["x-request-id"])
    assert [a.get("error") for a in rec["meta"]["attempts"]] == ["context_length_exceeded", None]


# ------------------------------------------------------------------- (c) other 400s stay 400s


@pytest.mark.parametrize(
    ("model", "p"), [("oa-up", "oa"), ("an-up", "an"), ("ge-up", "ge"), ("vllm-up", "oa")]
)
async def test_an_ordinary_400_does_not_fall_back(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, fakes: dict[str, Fake], model: str, p: str
) -> None:
    fakes[p].set_fault("error=invalid")
    first, big = len(fakes[p].requests), len(fakes["big"].requests)
    status, h, body = await chat(http, gw, key, model)
    assert status == 400, body
    assert body["error"]["code"] != "context_length_exceeded"
    assert h["x-stellargate-attempts"] == "1"
    assert (len(fakes[p].requests) - first, len(fakes["big"].requests) - big) == (1, 0)


# ------------------------------------------- translated Anthropic streams: input tokens up front


async def test_anthropic_stream_from_an_openai_upstream_states_input_tokens(
    gw: GatewayProc, key: str
) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=15)
    try:
        starts: list[int] = []
        async with client.messages.stream(
            model="plain",
            max_tokens=64,
            system="You are terse.",
            messages=[{"role": "user", "content": "Say something about the sea, please."}],
        ) as stream:
            async for ev in stream:
                if ev.type == "message_start":
                    starts.append(ev.message.usage.input_tokens)
            final = await stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
    finally:
        await client.close()
    assert len(starts) == 1 and starts[0] > 0  # the gateway's count, before any upstream usage
    rec = await record(gw, request_id)
    # message_delta carried the upstream's own figures, and the SDK folded them in.
    assert not rec["usage_estimated"]
    assert final.usage.input_tokens == rec["prompt_tokens"] > 0
    assert final.usage.output_tokens == rec["completion_tokens"] > 0
