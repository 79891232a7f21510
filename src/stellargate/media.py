"""Fetch the image URLs a client sent, for providers that accept images only inline.

Adapters are pure, so the fetch happens before ``translate_request``: the Invoker calls
``inline_image_urls`` when the provider's capabilities say it cannot fetch URLs itself.

Fetching a URL a client chose is a server-side request forgery risk: without a guard, a client
could make the gateway read its own admin API, a cloud metadata service or anything else on
the private network. The guard:

* only ``http`` and ``https``;
* every address a host name resolves to must be public (not private, loopback, link-local,
  shared, reserved, multicast or unspecified, IPv4-mapped/6to4/Teredo forms included), checked
  in the resolver the connection itself uses, so a DNS answer cannot change between the check
  and the connect;
* a literal IP in the URL is checked the same way (aiohttp does not call the resolver for it);
* redirects are followed by hand (at most ``MAX_REDIRECTS``), each hop checked again;
* at most ``MAX_BYTES``, within ``TIMEOUT`` seconds, and the body must be an image.

``allow_private`` (the provider setting ``allow_private_media``) lifts only the address check;
it exists for tests and for deployments that serve their own images from a private network.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from stellargate.core.request import ChatRequest, ImagePart, Message
from stellargate.errors import InvalidRequest

MAX_BYTES = 20 * 1024 * 1024  # Gemini's limit for a whole inline request
TIMEOUT = 15.0
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Sniffed when the server sends no usable Content-Type.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class MediaRefused(Exception):
    """The URL may not or could not be fetched; the message says why, for the client."""


def is_public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 address reach that address: judge the embedded one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public(embedded)
    return ip.is_global and not ip.is_multicast


class _GuardedResolver(AbstractResolver):
    """Resolves through the default resolver and refuses if any answer is not public."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if not is_public(ipaddress.ip_address(r["host"].split("%")[0])):
                # Every address, not just the first: the connector may try any of them.
                raise MediaRefused(f"the host '{host}' resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: URL, allow_private: bool) -> None:
    if url.scheme not in ("http", "https") or not url.host:
        raise MediaRefused("only http and https image URLs can be fetched")
    if allow_private:
        return
    try:
        ip = ipaddress.ip_address(url.host.strip("[]").split("%")[0])
    except ValueError:
        return  # a host name: the guarded resolver checks what it resolves to
    if not is_public(ip):
        raise MediaRefused("the URL points to a non-public address")


def _media_type(content_type: str | None, head: bytes) -> str:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct.startswith("image/"):
        return ct
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise MediaRefused(f"the URL did not return an image (Content-Type '{ct or 'none'}')")


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    cl = resp.content_length
    if cl is not None and cl > MAX_BYTES:
        raise MediaRefused(f"the image is larger than {MAX_BYTES // (1024 * 1024)} MB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise MediaRefused(f"the image is larger than {MAX_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _fetch_in(session: aiohttp.ClientSession, url: URL, allow_private: bool) -> tuple[bytes, str]:
    for _ in range(MAX_REDIRECTS + 1):
        _check_url(url, allow_private)
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status in _REDIRECTS and "location" in resp.headers:
                url = url.join(URL(resp.headers["location"]))
                continue
            if resp.status != 200:
                raise MediaRefused(f"the URL answered with HTTP {resp.status}")
            body = await _read(resp)
            return body, _media_type(resp.headers.get("content-type"), body[:16])
    raise MediaRefused(f"more than {MAX_REDIRECTS} redirects")


async def fetch_image(url: str, *, allow_private: bool = False) -> tuple[bytes, str]:
    """(bytes, media type) of the image at ``url``; MediaRefused says why not."""
    try:
        parsed = URL(url)
    except ValueError:
        raise MediaRefused("the URL is not valid") from None
    resolver: AbstractResolver = DefaultResolver() if allow_private else _GuardedResolver()
    # A connector per fetch: nothing (DNS cache, pooled connections) outlives the checks made for it.
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=4)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=min(TIMEOUT, 5.0))
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as s:
            return await _fetch_in(s, parsed, allow_private)
    except MediaRefused:
        raise
    except aiohttp.ClientConnectorError as e:
        # The guarded resolver's refusal arrives wrapped in aiohttp's connection error.
        cause: Any = e.__cause__ or getattr(e, "os_error", None)
        if isinstance(cause, MediaRefused):
            raise cause from None
        raise MediaRefused("could not connect to the image host") from None
    except TimeoutError:
        raise MediaRefused(f"the download did not finish within {TIMEOUT:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as e:
        if isinstance(e.__cause__, MediaRefused):
            raise e.__cause__ from None
        raise MediaRefused(f"the download failed ({type(e).__name__})") from None
    finally:
        await resolver.close()  # a resolver passed in is not closed by its connector


def _needs_fetch(p: object) -> bool:
    return isinstance(p, ImagePart) and p.data is None and (p.url or "").startswith(("http://", "https://"))


async def inline_image_urls(req: ChatRequest, *, allow_private: bool = False) -> ChatRequest:
    """``req`` with every http(s) image URL replaced by the fetched image (base64)."""
    where = [(i, j) for i, m in enumerate(req.messages) for j, p in enumerate(m.content) if _needs_fetch(p)]
    if not where:
        return req

    async def one(i: int, j: int) -> ImagePart:
        part = req.messages[i].content[j]
        assert isinstance(part, ImagePart) and part.url is not None
        try:
            data, media_type = await fetch_image(part.url, allow_private=allow_private)
        except MediaRefused as e:
            raise InvalidRequest(
                f"Could not use the image URL in messages[{i}].content[{j}]: {e}.",
                param=f"messages[{i}].content[{j}].image_url.url",
                code="invalid_image_url",
            ) from None
        return ImagePart(
            data=base64.b64encode(data).decode("ascii"), media_type=media_type, detail=part.detail
        )

    try:
        # A task group, not gather: when one fetch fails the others are cancelled, not orphaned.
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(i, j)) for i, j in where]
    except ExceptionGroup as eg:
        raise eg.exceptions[0] from None
    messages: list[Message] = list(req.messages)
    for (i, j), task in zip(where, tasks, strict=True):
        part = task.result()
        m = messages[i]
        if m is req.messages[i]:
            m = messages[i] = dataclasses.replace(m, content=list(m.content))
        m.content[j] = part
    return dataclasses.replace(req, messages=messages)
