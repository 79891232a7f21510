"""The upstream HTTP/1.1 client against small real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from stellargate import http1

pytestmark = pytest.mark.asyncio(loop_scope="session")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest_asyncio.fixture(loop_scope="session")
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(srv)
        return f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"

    yield start
    for s in servers:
        s.close()


async def read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await r.readexactly(length)


async def read_all(resp: http1.Response) -> bytes:
    out = b""
    while chunk := await resp.read_chunk():
        out += chunk
    return out


async def test_request_shape_and_keep_alive_reuse(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[bytes] = []
    connections = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await read_request(r))
            except asyncio.IncompleteReadError:
                return
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    url = await serve(handler)
    c = http1.Client()
    for _ in range(3):
        pool, target = c.pool("p", url + "/v1/chat?x=1", 10, 5)
        resp = await pool.request(b"POST", target, {"authorization": "Bearer k"}, b'{"a":1}')
        assert resp.status == 200
        assert resp.headers["content-type"] == "application/json"
        assert await read_all(resp) == b"{}"
        resp.release()
    c.close()
    assert connections == 1
    first = seen[0]
    assert first.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert b"\r\nauthorization: Bearer k\r\n" in first
    assert b"\r\ncontent-length: 7\r\n" in first
    assert first.endswith(b'{"a":1}')


async def test_chunked_and_gzip_bodies(serve: Callable[[Handler], Awaitable[str]]) -> None:
    payload = b"data: hello\n\n" * 50
    packed = gzip.compress(payload)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n")
        for i in range(0, len(packed), 40):
            part = packed[i : i + 40]
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
        w.write(b"0\r\n\r\n")

    url = await serve(handler)
    c = http1.Client()
    pool, target = c.pool("p", url + "/", 10, 5)
    resp = await pool.request(b"GET", target, {}, b"")
    assert await read_all(resp) == payload
    resp.release()
    c.close()


async def test_a_stale_idle_connection_is_retried_on_a_fresh_one(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    calls = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal calls
        await read_request(r)
        calls += 1
        # keep-alive promised, but the server drops the connection right after answering
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(0.05)
        w.close()

    url = await serve(handler)
    c = http1.Client()
    pool, target = c.pool("p", url + "/", 10, 5)
    for _ in range(3):
        resp = await pool.request(b"POST", target, {}, b"x")
        assert await read_all(resp) == b"ok"
        resp.release()
        await asyncio.sleep(0.1)
    c.close()
    assert calls == 3


async def test_connection_refused_and_close_mid_body(serve: Callable[[Handler], Awaitable[str]]) -> None:
    c = http1.Client()
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    pool, target = c.pool("p", f"http://127.0.0.1:{port}/", 10, 5)
    with pytest.raises(OSError):
        await pool.request(b"GET", target, {}, b"")

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await w.drain()
        w.close()

    url = await serve(handler)
    pool, target = c.pool("p", url + "/", 10, 5)
    resp = await pool.request(b"GET", target, {}, b"")
    assert await resp.read_chunk() == b"partial"
    with pytest.raises(ConnectionError):
        await resp.read_chunk()
    resp.release()
    c.close()


async def test_pool_limit_and_slots_come_back(serve: Callable[[Handler], Awaitable[str]]) -> None:
    gate = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(r)
            except asyncio.IncompleteReadError:
                return
            await gate.wait()
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk")

    url = await serve(handler)
    c = http1.Client()
    pool, target = c.pool("p", url + "/", 2, 5)
    first = [asyncio.ensure_future(pool.request(b"GET", target, {}, b"")) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert sum(f.done() for f in first) == 0
    gate.set()
    for f in first:  # the third waits for a slot until the first response is released
        r = await asyncio.wait_for(f, 2)
        assert await read_all(r) == b"k"
        r.release()
    # an abandoned response (closed, not reused) must give its slot back too
    for _ in range(4):
        r = await pool.request(b"GET", target, {}, b"")
        r.release(reuse=False)
    r = await asyncio.wait_for(pool.request(b"GET", target, {}, b""), 2)
    r.release(reuse=False)
    c.close()


async def test_large_bodies_are_read_with_back_pressure(serve: Callable[[Handler], Awaitable[str]]) -> None:
    body = bytes(range(256)) * (4 * 4096 * 4)  # 16 MiB

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        w.write(body)
        await w.drain()

    url = await serve(handler)
    c = http1.Client()
    pool, target = c.pool("p", url + "/", 10, 5)
    resp = await pool.request(b"GET", target, {}, b"")
    await asyncio.sleep(0.2)  # the server writes while we do not read
    got = await read_all(resp)
    assert got == body
    resp.release()
    c.close()
