"""Transport timeouts, each phase on its own, against a scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from stellargate.errors import UpstreamTimeout
from stellargate.providers.base import UpstreamRequest
from stellargate.settings import Timeouts
from stellargate.transport import Transport

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[str]:
    """GET /<delay_before_headers>/<chunks>/<gap>: answers a chunked body on that schedule."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        _, delay, chunks, gap = head.split(b" ")[1].decode().split("/")
        await asyncio.sleep(float(delay))
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(int(chunks)):
            w.write(b"6\r\ndata\n\n\r\n")
            await w.drain()
            await asyncio.sleep(float(gap))
        w.write(b"0\r\n\r\n")
        await w.drain()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    srv.close()


async def fetch(url: str, t: Timeouts) -> bytes:
    tr = Transport()
    try:
        s = await tr.open(UpstreamRequest("GET", url, {}, b""), "p", t, 10)
        try:
            return await s.read_all()
        finally:
            s.close(reuse=False)
    finally:
        await tr.close()


async def test_completes_within_limits(server: str) -> None:
    body = await fetch(server + "/0/5/0.01", Timeouts(first_byte=1, idle=1, total=5))
    assert body == b"data\n\n" * 5


@pytest.mark.parametrize(
    ("path", "timeouts", "code", "at_most"),
    [
        ("/1.0/1/0", Timeouts(first_byte=0.2, idle=5, total=5), "upstream_timeout_first_byte", 0.6),
        ("/0/3/1.0", Timeouts(first_byte=5, idle=0.2, total=5), "upstream_timeout_idle", 0.6),
        ("/0/50/0.05", Timeouts(first_byte=5, idle=5, total=0.5), "upstream_timeout_total", 0.9),
    ],
)
async def test_each_timeout_fires_on_time(
    server: str, path: str, timeouts: Timeouts, code: str, at_most: float
) -> None:
    t0 = time.monotonic()
    with pytest.raises(UpstreamTimeout) as e:
        await fetch(server + path, timeouts)
    assert e.value.code == code
    assert time.monotonic() - t0 < at_most


async def test_a_slow_reader_is_not_an_idle_upstream(server: str) -> None:
    """The idle timer only runs while the gateway waits on the upstream."""
    tr = Transport()
    s = await tr.open(UpstreamRequest("GET", server + "/0/3/0", {}, b""), "p", Timeouts(idle=0.2), 10)
    got = b""
    async for chunk in s.chunks():
        got += chunk
        await asyncio.sleep(0.3)  # the client side is slow
    s.close(reuse=True)
    await tr.close()
    assert got == b"data\n\n" * 3
