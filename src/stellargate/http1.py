"""A small HTTP/1.1 client for the upstream hot path: keep-alive pools, TLS, streamed bodies.

Why not aiohttp: measured with ../shared/bench, aiohttp's per-request client machinery was the
largest single cost of a proxied request (about a third of the gateway's CPU on a non-streamed
call). This client does only what talking to an LLM API needs — one request per connection at a
time, a known-length body, a response read as it arrives — on an asyncio Protocol with the same
C parser (httptools/llhttp) that the server side uses.

Semantics worth knowing:
- A connection goes back to its pool only after its response was read to the end and neither
  side asked to close; a response abandoned midway closes its connection (that is how a provider
  learns the client went away).
- A request that fails on a *reused* idle connection before any byte of the response arrived is
  retried once on a fresh connection: the server closed the idle connection as we reused it,
  so it never saw the request.
- The body is read with back-pressure: reading from the socket pauses past 1 MiB unread.
- Responses with gzip or deflate content-encoding are decoded (we send no Accept-Encoding, so
  only a non-conforming server compresses).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from stellargate import __version__

_HIGH_WATER = 1 << 20
_UA = f"user-agent: stellargate/{__version__}\r\n".encode()


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


class _Conn(asyncio.Protocol):
    __slots__ = ("_buffer", "_buffered", "_closed_exc", "_done", "_headers", "_paused",
                 "_waiter", "got_bytes", "headers_ready", "keep_alive", "parser", "pool", "status",
                 "transport")  # fmt: skip

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._closed_exc: BaseException | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self.headers_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._paused = False
        self.got_bytes = False
        self.keep_alive = True

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionClosed(f"invalid HTTP response from upstream: {e}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.keep_alive = False
        self.pool.discard(self)
        if not self._done:
            self._fail(exc or ConnectionClosed("the upstream closed the connection"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._done = True
        self._wake()

    # -- used by Response -----------------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._closed_exc = exc
        if not self.headers_ready.done():
            self.headers_ready.set_exception(exc)
            self.headers_ready.exception()  # marked retrieved: the sender re-raises it
        self._wake()

    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._headers}

    async def read(self) -> bytes:
        """The next piece of the body, or b"" at its end."""
        while True:
            if self._buffer:
                data = self._buffer.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self._done:
                return b""
            if self._closed_exc is not None:
                raise self._closed_exc
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def finished(self) -> bool:
        return self._done and not self._buffer


class Response:
    __slots__ = ("_conn", "_decoder", "_released", "headers", "status")

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._released = False
        self.status = conn.status
        self.headers = conn.headers()
        enc = self.headers.get("content-encoding", "").lower()
        self._decoder: Any = None
        if enc in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._decoder = zlib.decompressobj()

    async def read_chunk(self) -> bytes:
        while True:
            data = await self._conn.read()
            if self._decoder is None or not data:
                return data
            out: bytes = self._decoder.decompress(data)
            if out:
                return out

    def release(self, *, reuse: bool = True) -> None:
        """Done with the response: pool the connection when it is clean, else close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if reuse and conn.finished and conn.keep_alive and conn.transport is not None:
            conn.pool.give_back(conn)
        else:
            if conn.transport is not None:
                conn.transport.close()
            conn.pool.free_slot()


class Pool:
    """Idle keep-alive connections to one origin, at most ``limit`` open at once."""

    def __init__(
        self, url: str, limit: int, connect_timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        u = urlsplit(url)
        self.scheme = u.scheme
        self.host = u.hostname or ""
        self.port = u.port or (443 if u.scheme == "https" else 80)
        default_port = self.port == (443 if u.scheme == "https" else 80)
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode("idna")
        self._ssl = (ssl_context or ssl.create_default_context()) if u.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(limit)

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Conn(self), self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )  # fmt: skip
        return conn

    def discard(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    def give_back(self, conn: _Conn) -> None:
        conn._reset()
        self._idle.append(conn)
        self._slots.release()

    def free_slot(self) -> None:
        self._slots.release()

    async def request(self, method: bytes, target: bytes, headers: dict[str, str], body: bytes) -> Response:
        head = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n", _UA]
        for k, v in headers.items():
            head += [k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n"]
        payload = b"".join(head) + body
        await self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.transport is None or conn.transport.is_closing():
                    continue
                try:
                    return await self._send(conn, payload)
                except (ConnectionError, OSError):
                    if conn.got_bytes:
                        raise
                    # A stale keep-alive connection: the server never saw the request.
            conn = await self._connect()
            return await self._send(conn, payload)
        except BaseException:
            self._slots.release()
            raise

    async def _send(self, conn: _Conn, payload: bytes) -> Response:
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            await conn.headers_ready
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        return Response(conn)

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


class Client:
    """Pools by (pool name, origin)."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], Pool] = {}
        self._ssl: ssl.SSLContext | None = None

    def pool(self, name: str, url: str, limit: int, connect_timeout: float) -> tuple[Pool, bytes]:
        u = urlsplit(url)
        origin = f"{u.scheme}://{u.netloc}"
        p = self._pools.get((name, origin))
        if p is None:
            if u.scheme == "https" and self._ssl is None:
                self._ssl = ssl.create_default_context()
            p = Pool(origin, limit, connect_timeout, self._ssl)
            self._pools[(name, origin)] = p
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        return p, target.encode("latin-1")

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
        self._pools.clear()
