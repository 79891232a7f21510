"""The image fetcher for inline-only providers, and its guard against server-side request forgery."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from stellargate import media
from stellargate.core.request import ChatRequest, ImagePart, Message, TextPart
from stellargate.errors import InvalidRequest
from tests.fakes._images import tiny_png

PNG = tiny_png("media")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server() -> AsyncIterator[str]:
    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, headers={"Content-Type": "application/octet-stream"})

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/cat.png", png)
    app.router.add_get("/page", text)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::1",
        "::",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not media.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "142.250.74.110", "2001:4860:4860::8888"])
def test_public_addresses(address: str) -> None:
    assert media.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/x.png", "non-public address"),
        ("http://[::1]/x.png", "non-public address"),
        ("http://169.254.169.254/latest/meta-data/", "non-public address"),
        ("http://localhost:9/x.png", "'localhost' resolves to a non-public address"),
        ("ftp://example.com/x.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_the_default_refuses_private_targets(url: str, why: str) -> None:
    with pytest.raises(media.MediaRefused) as e:
        await media.fetch_image(url)
    assert why in str(e.value)


async def test_private_targets_when_allowed(server: str) -> None:
    data, mime = await media.fetch_image(server + "/cat.png", allow_private=True)
    assert (data, mime) == (PNG, "image/png")  # sniffed: the server said octet-stream
    with pytest.raises(media.MediaRefused, match="HTTP 404"):
        await media.fetch_image(server + "/missing", allow_private=True)
    with pytest.raises(media.MediaRefused, match="did not return an image"):
        await media.fetch_image(server + "/page", allow_private=True)
    hop = await media.fetch_image(f"{server}/redirect?to=/cat.png", allow_private=True)
    assert hop[0] == PNG


async def test_redirects_are_checked_hop_by_hop(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the local server is public, so that only the redirect's target is judged.
    real = media.is_public
    monkeypatch.setattr(media, "is_public", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    assert (await media.fetch_image(server + "/cat.png"))[0] == PNG
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://[::1]/x"):
        with pytest.raises(media.MediaRefused, match="non-public"):
            await media.fetch_image(f"{server}/redirect?to={target}")


async def test_size_limit(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "MAX_BYTES", 16)
    with pytest.raises(media.MediaRefused, match="larger than"):
        await media.fetch_image(server + "/cat.png", allow_private=True)


async def test_inline_image_urls_rewrites_only_url_images(server: str) -> None:
    req = ChatRequest(
        model="m",
        messages=[
            Message("system", [TextPart("s")]),
            Message(
                "user",
                [
                    TextPart("a"),
                    ImagePart(url=server + "/cat.png", detail="low"),
                    ImagePart(data="AAAA", media_type="image/gif"),
                    ImagePart(url="gs://b/c.png"),
                ],
            ),
        ],
    )
    out = await media.inline_image_urls(req, allow_private=True)
    parts = out.messages[1].content
    assert parts[1] == ImagePart(data=base64.b64encode(PNG).decode(), media_type="image/png", detail="low")
    assert parts[2:] == req.messages[1].content[2:]
    assert isinstance(req.messages[1].content[1], ImagePart) and req.messages[1].content[1].url  # not mutated
    assert out.messages[0] is req.messages[0]
    with pytest.raises(InvalidRequest) as e:
        await media.inline_image_urls(req)
    assert e.value.code == "invalid_image_url" and e.value.param == "messages[1].content[1].image_url.url"
