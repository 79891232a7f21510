"""The real gateway process behind an outbound HTTP proxy: environment variables, NO_PROXY, a
provider's own ``proxy`` (and ``none``), http and https upstreams, and proxies that refuse."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fakes.http_proxy import FakeProxy, make_ca
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, start_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM_KEY = "sk-upstream-proxy-test-1234"
PASSWORD = "env-pr0xy-pass-7c1"
PASSWORD2 = "explicit-pr0xy-pass-9d2"
WRONG = "wr0ng-pr0xy-pass-3e4"


def _local_hostname() -> str | None:
    """This machine's name when it resolves to a loopback address (where the fake listens) and
    is not ``localhost``: a name the loopback rule does not catch, for a positive NO_PROXY test."""
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return None
    return name if addr == "127.0.0.1" and "localhost" not in name.lower() else None


HOSTNAME = _local_hostname()


@dataclass
class Setup:
    gw: GatewayProc
    key: str
    proxy: FakeProxy  # the environment's, user:PASSWORD
    explicit: FakeProxy  # one provider's own, other:PASSWORD2
    plain: FakeOpenAI
    tls: FakeOpenAI


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    tmp = tmp_path_factory.mktemp("proxy")
    ca = make_ca(tmp / "ca", ["upstream.proxytest"])
    tls = FakeOpenAI(api_key=UPSTREAM_KEY, chunk_delay=0.001)
    tls.ssl_context = ca.server_context()
    async with (
        FakeOpenAI(api_key=UPSTREAM_KEY, chunk_delay=0.001) as plain,
        tls,
        FakeProxy(credentials=("user", PASSWORD)) as proxy,
        FakeProxy(credentials=("other", PASSWORD2)) as explicit,
    ):
        env_proxy = proxy.url("user", PASSWORD)

        def provider(base: str, **extra: Any) -> dict[str, Any]:
            return {"type": "openai", "base_url": base, "api_key": UPSTREAM_KEY, **extra}

        providers = {
            "tunnel": provider(f"https://upstream.proxytest:{tls.port}/v1"),
            "forward": provider(f"http://upstream.proxytest:{plain.port}/v1"),
            "noproxy": provider(f"http://bypass.proxytest:{plain.port}/v1"),
            "direct": provider(f"http://upstream.proxytest:{plain.port}/v1", proxy="none"),
            "explicit": provider(f"http://127.0.0.1:{plain.port}/v1", proxy=explicit.url("other", PASSWORD2)),
            "refused_tunnel": provider(
                f"https://upstream.proxytest:{tls.port}/v1", proxy=proxy.url("user", WRONG)
            ),
            "refused_forward": provider(
                f"http://upstream.proxytest:{plain.port}/v1", proxy=proxy.url("user", WRONG)
            ),
            "loopback": provider(f"http://127.0.0.1:{plain.port}/v1"),
        }
        if HOSTNAME:
            providers["byname"] = provider(f"http://{HOSTNAME}:{plain.port}/v1")
        config = {
            "log_level": "debug",  # the most lines the credentials could leak into
            "providers": providers,
            "models": [{"name": name, "provider": name, "model": "gpt-4o"} for name in providers],
        }
        no_proxy = ".bypass.proxytest" + (f", {HOSTNAME}" if HOSTNAME else "")
        env = {
            "HTTPS_PROXY": env_proxy,
            "https_proxy": env_proxy,
            "HTTP_PROXY": env_proxy,
            "http_proxy": env_proxy,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "SSL_CERT_FILE": str(ca.ca_file),
        }
        gw = await start_gateway(tmp, config, env=env)
        try:
            _, key = await gw.create_key("proxy-test")
            yield Setup(gw, key, proxy, explicit, plain, tls)
        finally:
            gw.stop()


async def _chat(s: Setup, model: str, *, stream: bool = False) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": stream}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            s.gw.v1 + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {s.key}"},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as r,
    ):
        return r.status, await r.text()


async def test_https_upstream_through_the_environment_proxy_tunnel(setup: Setup) -> None:
    before = len(setup.tls.requests)
    status, text = await _chat(setup, "tunnel")
    assert status == 200, text
    status, text = await _chat(setup, "tunnel", stream=True)
    assert status == 200 and text.rstrip().endswith("data: [DONE]"), text
    assert len(setup.tls.requests) == before + 2
    # One CONNECT for both requests: the tunnelled TLS connection is kept alive and reused.
    assert setup.proxy.tunnels.count(f"upstream.proxytest:{setup.tls.port}") == 1
    creds = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert f"Basic {creds}" in setup.proxy.authorizations
    # The provider's key went through the tunnel to the upstream, not to the proxy.
    assert setup.tls.last_request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_http_upstream_through_the_environment_proxy_in_absolute_form(setup: Setup) -> None:
    status, text = await _chat(setup, "forward")
    assert status == 200, text
    status, text = await _chat(setup, "forward", stream=True)
    assert status == 200 and text.rstrip().endswith("data: [DONE]"), text
    url = f"http://upstream.proxytest:{setup.plain.port}/v1/chat/completions"
    assert setup.proxy.forwarded.count(url) == 2


async def test_a_providers_own_proxy_applies_even_to_loopback(setup: Setup) -> None:
    status, text = await _chat(setup, "explicit", stream=True)
    assert status == 200 and "[DONE]" in text, text
    assert setup.explicit.forwarded == [f"http://127.0.0.1:{setup.plain.port}/v1/chat/completions"]
    creds = base64.b64encode(f"other:{PASSWORD2}".encode()).decode()
    assert setup.explicit.authorizations == [f"Basic {creds}"]


async def test_loopback_no_proxy_and_proxy_none_go_direct(setup: Setup) -> None:
    seen = (len(setup.proxy.tunnels), len(setup.proxy.forwarded), setup.proxy.refused)
    status, text = await _chat(setup, "loopback")
    assert status == 200, text
    if HOSTNAME:
        status, text = await _chat(setup, "byname")  # in NO_PROXY, and reachable direct
        assert status == 200, text
    # These names resolve only inside the proxy: going direct, the gateway cannot reach them.
    for model in ("noproxy", "direct"):
        status, text = await _chat(setup, model)
        assert status == 503 and "upstream_connect_failed" in text, text
    assert (len(setup.proxy.tunnels), len(setup.proxy.forwarded), setup.proxy.refused) == seen


async def test_a_refusing_proxy_is_a_clean_connect_error_in_each_dialect(setup: Setup) -> None:
    for model in ("refused_tunnel", "refused_forward"):
        for stream in (False, True):
            status, text = await _chat(setup, model, stream=stream)
            assert status == 503, text
            assert "upstream_connect_failed" in text and "407" in text, text
    body = {"model": "refused_tunnel", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            setup.gw.v1 + "/messages",
            json=body,
            headers={"x-api-key": setup.key, "anthropic-version": "2023-06-01"},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as r,
    ):
        answer = await r.json()
        assert r.status == 503, answer
    assert answer["type"] == "error" and "407" in answer["error"]["message"], answer


async def test_proxy_credentials_never_reach_the_log(setup: Setup) -> None:
    await _chat(setup, "refused_tunnel")
    log = setup.gw.log()
    assert f"via proxy http://***@127.0.0.1:{setup.proxy.port}" in log  # the banner says where
    for secret in (PASSWORD, PASSWORD2, WRONG):
        assert secret not in log
        for user in ("user", "other"):
            assert base64.b64encode(f"{user}:{secret}".encode()).decode() not in log
