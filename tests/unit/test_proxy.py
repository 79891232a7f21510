"""Outbound proxies: the rules of proxy.py, their settings, and http1 through a real proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr

from stellargate import http1
from stellargate.errors import UpstreamUnavailable
from stellargate.logs import redact
from stellargate.pipeline.retry import error_class
from stellargate.providers.base import UpstreamRequest
from stellargate.proxy import (
    NoProxy,
    ProxyConfigError,
    ProxyEnvironment,
    choose_proxy,
    parse_proxy_url,
)
from stellargate.settings import ConfigError, Timeouts, load_settings
from stellargate.transport import Transport
from tests.fakes.http_proxy import FakeProxy, ThrowawayCA, make_ca
from tests.harness import free_port

PASSWORD = "pr0xy-s3cret"


# -- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "host", "port", "expected"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        (".example.com", "a.b.example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("example.com", "example.com.evil.net", 443, False),
        ("EXAMPLE.com", "Api.Example.COM.", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8, 192.168.1.7", "10.2.3.4", 80, True),
        ("10.0.0.0/8 192.168.1.7", "192.168.1.7", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),  # names are not resolved to match IP entries
        ("fd00::/8", "fd12::1", 443, True),
        ("[::1]:8443", "::1", 8443, True),
        ("::1", "[::1]", 443, True),
        ("*", "anything.at.all", 1, True),
        ("", "example.com", 443, False),
    ],
)
def test_no_proxy_matching(entries: str, host: str, port: int, expected: bool) -> None:
    assert NoProxy.parse(entries).matches(host, port) is expected


@pytest.mark.parametrize("bad", ["exa*mple.com", "10.0.0.0/33", "host:port", "a/b"])
def test_no_proxy_entries_that_cannot_be_read(bad: str) -> None:
    with pytest.raises(ProxyConfigError):
        NoProxy.parse(f"ok.example, {bad}")


def test_proxy_urls() -> None:
    p = parse_proxy_url(f"http://user:{PASSWORD}@Proxy.Corp:3128/")
    assert (p.host, p.port, p.authorization) == ("proxy.corp", 3128, "Basic dXNlcjpwcjB4eS1zM2NyZXQ=")
    assert p.display == "http://***@proxy.corp:3128" and PASSWORD not in repr(p)
    assert parse_proxy_url("proxy.corp:8080").port == 8080  # scheme-less is http, as curl reads it
    assert parse_proxy_url("http://proxy.corp").port == 80
    assert parse_proxy_url("http://[::1]:3128").display == "http://[::1]:3128"
    # Percent-escaped credentials are sent decoded.
    assert parse_proxy_url("http://a%40b:p%3Aw@h:1").authorization == "Basic YUBiOnA6dw=="
    for bad in ("https://h:1", "socks5://h:1080", "http://h:1/path", "http://:3128", "http://h:x"):
        with pytest.raises(ProxyConfigError) as e:
            parse_proxy_url(bad)
        assert e.value.fix


def test_environment_precedence_loopback_and_explicit_settings() -> None:
    env, problems = ProxyEnvironment.parse(
        {
            "HTTPS_PROXY": "http://upper:1",
            "https_proxy": "http://lower:2",
            "HTTP_PROXY": "http://plain:3",
            "NO_PROXY": ".internal",
        }
    )
    assert problems == []
    via = env.choose("https", "api.openai.com", 443)
    assert via is not None and via.host == "lower"  # lowercase wins, as in curl and requests
    via = env.choose("http", "vllm.example", 8000)
    assert via is not None and via.host == "plain"
    assert env.choose("https", "llm.internal", 443) is None
    for loopback in ("localhost", "a.localhost", "127.0.0.1", "127.9.9.9", "::1"):
        assert env.choose("http", loopback, 11434) is None
    # An explicit setting beats the environment, NO_PROXY and the loopback rule.
    explicit = choose_proxy("http://mine:9", env, "http", "127.0.0.1", 11434)
    assert explicit is not None and explicit.host == "mine"
    assert choose_proxy("none", env, "https", "api.openai.com", 443) is None
    assert choose_proxy("NONE", env, "https", "api.openai.com", 443) is None
    assert choose_proxy("", env, "https", "api.openai.com", 443) == env.choose("https", "api.openai.com", 443)


def test_settings_validate_proxies_with_the_key_and_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "providers:\n"
        "  a: {type: openai, api_key: k, proxy: 'https://proxy.corp:3128'}\n"
        f"  b: {{type: openai, api_key: k, proxy: 'socks5://u:{PASSWORD}@h:1'}}\n"
        "  c: {type: openai, api_key: k}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {"HTTP_PROXY": "http://h:notaport", "no_proxy": "ok, bad*entry"})
    text = str(e.value)
    assert PASSWORD not in text
    by_path = {p.path: p for p in e.value.problems}
    assert set(by_path) == {"providers.a.proxy", "providers.b.proxy", "HTTP_PROXY", "no_proxy"}, text
    assert "https:// proxies" in by_path["providers.a.proxy"].message
    assert "none to go direct" in by_path["providers.a.proxy"].fix
    assert by_path["providers.a.proxy"].line == 2
    assert by_path["HTTP_PROXY"].file == "environment"
    assert "HTTP_PROXY" in by_path["HTTP_PROXY"].fix


def test_settings_keep_the_proxy_secret_and_read_the_environment_once(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "providers:\n"
        f"  a: {{type: openai, api_key: k, proxy: 'http://u:{PASSWORD}@h:1'}}\n"
        "  b: {type: openai, api_key: k, proxy: none}\n"
        "  c: {type: openai, api_key: k, proxy: '${UNSET_PROXY}'}\n"
    )
    s = load_settings(cfg, {"HTTPS_PROXY": "http://envproxy:3128", "PATH": "/bin"})
    a, b, c = s.providers["a"], s.providers["b"], s.providers["c"]
    assert a.proxy is not None and PASSWORD not in repr(s) and PASSWORD not in str(a.proxy)
    assert b.proxy is not None and b.proxy.get_secret_value() == "none"
    assert c.proxy is None  # an unset variable leaves it to the environment
    assert s.proxy_environment == {"HTTPS_PROXY": "http://envproxy:3128"}
    # A bad environment proxy that no provider relies on does not stop the start.
    cfg.write_text("providers:\n  a: {type: openai, api_key: k, proxy: none}\n")
    load_settings(cfg, {"HTTPS_PROXY": "socks5://h:1080"})


def test_logs_mask_proxy_credentials() -> None:
    line = redact(
        f"via http://user:{PASSWORD}@proxy:3128 with Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA=="
    )
    assert PASSWORD not in line and "dXNlcjpwYXNzd29yZA" not in line
    assert "http://***@proxy:3128" in line


# -- http1 through a real proxy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return make_ca(tmp_path_factory.mktemp("ca"), ["upstream.proxytest", "127.0.0.1"])


@pytest_asyncio.fixture
async def upstreams(ca: ThrowawayCA) -> AsyncIterator[tuple[int, int]]:
    """(plain port, TLS port) of a tiny upstream that echoes its request line and Host."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                host = next(x for x in lines if x.lower().startswith(b"host:"))
                length = next((int(x[15:]) for x in lines if x.lower().startswith(b"content-length:")), 0)
                await r.readexactly(length)
                body = lines[0] + b"|" + host
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    plain = await asyncio.start_server(handle, "127.0.0.1", 0)
    tls = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ca.server_context())
    yield plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1]
    plain.close()
    tls.close()


async def _body(resp: http1.Response) -> bytes:
    out = b""
    while chunk := await resp.read_chunk():
        out += chunk
    resp.release()
    return out


async def test_https_through_a_connect_tunnel_with_credentials(
    upstreams: tuple[int, int], ca: ThrowawayCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    _, tls_port = upstreams
    async with FakeProxy(credentials=("user", PASSWORD)) as proxy:
        env, _ = ProxyEnvironment.parse({"HTTPS_PROXY": proxy.url("user", PASSWORD)})
        c = http1.Client(env)
        for _ in range(3):
            pool, target = c.pool("p", f"https://upstream.proxytest:{tls_port}/v1/x?q=1", 10, 5)
            resp = await pool.request(b"POST", target, {}, b"{}")
            assert resp.status == 200
            assert (
                await _body(resp) == f"POST /v1/x?q=1 HTTP/1.1|host: upstream.proxytest:{tls_port}".encode()
            )
        c.close()
    assert proxy.tunnels == [f"upstream.proxytest:{tls_port}"]  # one tunnel, kept alive
    assert proxy.authorizations == ["Basic dXNlcjpwcjB4eS1zM2NyZXQ="]


async def test_http_through_a_forwarding_proxy_and_pools_apart(upstreams: tuple[int, int]) -> None:
    plain_port, _ = upstreams
    async with FakeProxy(credentials=("user", PASSWORD)) as proxy:
        c = http1.Client()
        url = f"http://127.0.0.1:{plain_port}/v1/chat"
        explicit = proxy.url("user", PASSWORD)
        via, target = c.pool("p", url, 10, 5, explicit)
        direct, _ = c.pool("p", url, 10, 5)
        assert via is not direct  # the same origin, direct and proxied, never share a pool
        assert type(direct) is http1.Pool  # direct connections run the code they always ran
        assert c.pool("p", url, 10, 5, "none")[0] is not via
        resp = await via.request(b"POST", target, {"x": "1"}, b"{}")
        # The proxy turned the absolute form back into origin form for the upstream.
        assert await _body(resp) == f"POST /v1/chat HTTP/1.1|host: 127.0.0.1:{plain_port}".encode()
        resp = await direct.request(b"POST", target, {}, b"{}")
        await _body(resp)
        c.close()
    assert proxy.forwarded == [f"http://127.0.0.1:{plain_port}/v1/chat"]
    assert proxy.authorizations == ["Basic dXNlcjpwcjB4eS1zM2NyZXQ="]


async def test_a_refusing_proxy_is_a_connect_failure(
    upstreams: tuple[int, int], ca: ThrowawayCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    plain_port, tls_port = upstreams
    t = Timeouts(connect=2, first_byte=2, idle=2, total=5)
    async with FakeProxy(credentials=("user", PASSWORD)) as proxy:
        transport = Transport()
        wrong = proxy.url("user", "wrong")
        for url in (
            f"https://upstream.proxytest:{tls_port}/v1",
            f"http://upstream.proxytest:{plain_port}/v1",
        ):
            req = UpstreamRequest("POST", url, {}, b"{}")
            with pytest.raises(UpstreamUnavailable) as e:
                await transport.send(req, "p", t, 10, SecretStr(wrong))
            assert e.value.code == "upstream_connect_failed" and error_class(e.value) == "connect"
            assert "407" in e.value.message and "wrong" not in e.value.message
        nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        for url in (
            f"https://upstream.proxytest:{tls_port}/v1",
            f"http://upstream.proxytest:{plain_port}/v1",
        ):
            with pytest.raises(UpstreamUnavailable) as e:
                await transport.send(UpstreamRequest("POST", url, {}, b"{}"), "p", t, 10, SecretStr(nobody))
            assert e.value.code == "upstream_connect_failed" and "could not be reached" in e.value.message
        await transport.close()
    assert proxy.refused == 2 and proxy.tunnels == [] and proxy.forwarded == []
