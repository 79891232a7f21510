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
- Outbound HTTP proxies (proxy.py decides which, once per pool): an https upstream is reached
  through a ``CONNECT host:port`` tunnel, TLS to the upstream then starting over it
  (``loop.start_tls``); an http upstream gets absolute-form request lines sent to the proxy.
  Both send ``Proxy-Authorization: Basic`` when the proxy URL has credentials. A refused tunnel
  (or a forwarding proxy's 407) raises ``ProxyError``, an ``OSError`` and so a connect failure to
  the caller. A pool is keyed by its proxy setting as well as its origin, so proxied and direct
  connections never share one; direct pools run exactly the code they ran before.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

import httptools

from stellargate import __version__
from stellargate.proxy import ProxyEnvironment, ProxyURL, choose_proxy

_HIGH_WATER = 1 << 20
_UA = f"user-agent: stellargate/{__version__}\r\n".encode()


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


class ProxyError(OSError):
    """The proxy would not carry the request: nothing reached the upstream (a connect failure)."""


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


_T = TypeVar("_T")


class _SecretText(Protocol):  # pydantic's SecretStr, without importing pydantic here
    def get_secret_value(self) -> str: ...


# A provider's ``proxy`` setting as given: None lets the environment decide (see proxy.py).
ProxySetting = str | _SecretText | None


async def _to_proxy(connecting: Awaitable[_T]) -> _T:
    """Says that it was the proxy that could not be reached (its address stays out of the message,
    which reaches API callers)."""
    try:
        return await connecting
    except TimeoutError:
        raise
    except OSError as e:
        raise ProxyError(f"the proxy could not be reached ({e.strerror or type(e).__name__})") from e


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _ForwardPool(Pool):
    """An http upstream through a proxy: the proxy gets absolute-form request lines."""

    def __init__(self, url: str, limit: int, connect_timeout: float, proxy: ProxyURL) -> None:
        super().__init__(url, limit, connect_timeout, None)
        self.proxy = proxy
        self._origin = b"http://" + self.host_header
        self._auth = {"proxy-authorization": proxy.authorization} if proxy.authorization else {}

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await _to_proxy(
                loop.create_connection(lambda: _Conn(self), self.proxy.host, self.proxy.port)
            )
        return conn

    async def request(self, method: bytes, target: bytes, headers: dict[str, str], body: bytes) -> Response:
        resp = await super().request(method, self._origin + target, {**headers, **self._auth}, body)
        if resp.status == 407:  # the proxy's own refusal; no upstream answers 407
            resp.release(reuse=False)
            raise ProxyError("the proxy answered 407 Proxy Authentication Required")
        return resp


class _TunnelSetup(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT, up to the blank line; the TLS layer takes over after."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > 65536:
                self._fail("an answer to CONNECT longer than 64 KiB")
            return
        line = bytes(self._buf[: self._buf.find(b"\r\n")]).decode("latin-1")
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            self._fail("an answer to CONNECT that is not HTTP")
            return
        status = int(parts[1])
        if 200 <= status < 300 and end + 4 < len(self._buf):
            self._fail("bytes after its answer to CONNECT, before TLS began")
            return
        # The reason phrase is the proxy's own text: kept short and printable for messages.
        reason = "".join(c for c in (parts[2] if len(parts) > 2 else "")[:80] if c.isprintable())
        self.answer.set_result((status, reason))

    def _fail(self, what: str) -> None:
        self.answer.set_exception(ProxyError(f"the proxy sent {what}"))
        self.answer.exception()  # marked retrieved: the awaiting side re-raises it

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ProxyError("the proxy closed the connection during CONNECT"))
            self.answer.exception()


class _TunnelPool(Pool):
    """An https upstream through a proxy: CONNECT, then TLS to the upstream inside the tunnel."""

    def __init__(self, url: str, limit: int, connect_timeout: float, ssl_context: ssl.SSLContext | None,
                 proxy: ProxyURL) -> None:  # fmt: skip
        super().__init__(url, limit, connect_timeout, ssl_context)
        self.proxy = proxy
        authority = _authority(self.host, self.port).encode("idna")
        auth = f"proxy-authorization: {proxy.authorization}\r\n".encode() if proxy.authorization else b""
        self._connect_head = b"".join(
            [b"CONNECT ", authority, b" HTTP/1.1\r\nhost: ", authority, b"\r\n", _UA, auth, b"\r\n"]
        )

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        assert self._ssl is not None
        async with asyncio.timeout(self._connect_timeout):
            raw, setup = await _to_proxy(
                loop.create_connection(_TunnelSetup, self.proxy.host, self.proxy.port)
            )
            try:
                raw.write(self._connect_head)
                status, reason = await setup.answer
                if not 200 <= status < 300:
                    raise ProxyError(f"the proxy refused the tunnel: {status} {reason}".rstrip())
                conn = _Conn(self)
                tls = await loop.start_tls(raw, conn, self._ssl, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
        if tls is None:  # only when the transport closed meanwhile
            raise ProxyError("the proxy closed the tunnel during the TLS handshake")
        conn.connection_made(tls)
        return conn


class Client:
    """Pools by (pool name, origin, the provider's proxy setting).

    The proxy setting is part of the key because a config reload may change it for an origin:
    the pool it selects was built for exactly that route, direct or through one proxy. The
    environment's proxies are fixed for the life of the process.
    """

    def __init__(self, proxy_env: ProxyEnvironment | None = None) -> None:
        self._pools: dict[tuple[str, str, ProxySetting], Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._proxy_env = proxy_env or ProxyEnvironment()

    def pool(
        self, name: str, url: str, limit: int, connect_timeout: float, proxy: ProxySetting = None
    ) -> tuple[Pool, bytes]:
        """``proxy`` is part of the key as given (a SecretStr hashes and compares by value), so
        resolving it costs nothing until a pool is made."""
        u = urlsplit(url)
        origin = f"{u.scheme}://{u.netloc}"
        p = self._pools.get((name, origin, proxy))
        if p is None:
            p = self._new_pool(u, origin, limit, connect_timeout, proxy)
            self._pools[(name, origin, proxy)] = p
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        return p, target.encode("latin-1")

    def _new_pool(
        self, u: SplitResult, origin: str, limit: int, connect_timeout: float, proxy: ProxySetting
    ) -> Pool:
        https = u.scheme == "https"
        if https and self._ssl is None:
            self._ssl = ssl.create_default_context()
        explicit = proxy if proxy is None or isinstance(proxy, str) else proxy.get_secret_value()
        port = u.port or (443 if https else 80)
        via = choose_proxy(explicit, self._proxy_env, u.scheme, u.hostname or "", port)
        if via is None:
            return Pool(origin, limit, connect_timeout, self._ssl)
        if https:
            return _TunnelPool(origin, limit, connect_timeout, self._ssl, via)
        return _ForwardPool(origin, limit, connect_timeout, via)

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
        self._pools.clear()
