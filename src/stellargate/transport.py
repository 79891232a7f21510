"""The only network I/O to providers: pooled keep-alive HTTP/1.1 (http1.py), timeouts, error mapping.

Timeouts are watched by one timer per request (``_Watchdog``) that is re-armed lazily, rather than
one timer per chunk: the stream hot path only stores a timestamp. The watchdog cancels the task
only while it is waiting for the upstream, so a slow client never counts as a silent upstream.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from stellargate import http1
from stellargate.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from stellargate.providers.base import UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from pydantic import SecretStr

    from stellargate.proxy import ProxyEnvironment
    from stellargate.settings import Timeouts

log = logging.getLogger("stellargate.transport")


class _Watchdog:
    __slots__ = ("_handle", "_loop", "_task", "deadline", "expired", "gap", "last", "phase", "waiting")

    def __init__(self, t: Timeouts) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.last = self._loop.time()
        self.deadline = self.last + t.total
        self.gap = t.first_byte
        self.phase = "first_byte"
        self.expired: str | None = None
        self.waiting = True
        self._handle = self._loop.call_at(min(self.last + self.gap, self.deadline), self._check)

    def body_phase(self, idle: float) -> None:
        self.phase, self.gap, self.last = "idle", idle, self._loop.time()
        # The timer is armed for the first-byte gap; the idle gap may be shorter.
        self._handle.cancel()
        self._handle = self._loop.call_at(min(self.last + idle, self.deadline), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self.waiting and self.expired is None:
            if now >= self.deadline:
                self.expired = "total"
            elif now - self.last >= self.gap:
                self.expired = self.phase
            if self.expired is not None:
                self._task.cancel()
                return
        self._handle = self._loop.call_at(
            min(max(self.last + self.gap, now + 0.05), self.deadline + 0.001), self._check
        )

    def stop(self) -> None:
        self._handle.cancel()

    def timeout_error(self) -> UpstreamTimeout:
        what = {
            "first_byte": "did not start answering within the first-byte timeout",
            "idle": "went silent mid-stream for longer than the idle timeout",
            "total": "did not finish within the total timeout",
        }[self.expired or "total"]
        return UpstreamTimeout(f"The upstream {what}.", code=f"upstream_timeout_{self.expired}")


def _connection_error(e: BaseException, *, connecting: bool) -> UpstreamError:
    if isinstance(e, TimeoutError) and connecting:
        return UpstreamTimeout("Connecting to the upstream timed out.", code="upstream_timeout_connect")
    if connecting:
        return UpstreamUnavailable(
            "Could not connect to the upstream provider.", code="upstream_connect_failed"
        )
    return UpstreamError(
        "The upstream closed the connection before the answer was complete.", code="upstream_disconnected"
    )


class UpstreamStream:
    """An open upstream response whose body is read as it arrives."""

    __slots__ = ("_resp", "_wd", "headers", "status")

    def __init__(self, resp: http1.Response, wd: _Watchdog, idle: float) -> None:
        self._resp = resp
        self._wd = wd
        self.status = resp.status
        self.headers = resp.headers
        wd.body_phase(idle)

    async def chunks(self) -> AsyncIterator[bytes]:
        wd = self._wd
        read = self._resp.read_chunk
        loop_time = wd._loop.time
        try:
            while True:
                wd.waiting = True
                try:
                    data = await read()
                except asyncio.CancelledError:
                    if wd.expired is not None:
                        task = asyncio.current_task()
                        if task is not None:
                            task.uncancel()
                        raise wd.timeout_error() from None
                    raise
                except (OSError, zlib.error) as e:
                    raise _connection_error(e, connecting=False) from None
                wd.waiting = False
                if not data:
                    return
                wd.last = loop_time()
                yield data
        finally:
            wd.waiting = False

    async def read_all(self) -> bytes:
        parts = [c async for c in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self, *, reuse: bool) -> None:
        """Release the connection to the pool, or close it (which is how the upstream learns a
        request was cancelled)."""
        self._wd.stop()
        self._resp.release(reuse=reuse)


class Transport:
    def __init__(self, proxy_env: ProxyEnvironment | None = None) -> None:
        self._client = http1.Client(proxy_env)

    async def open(
        self,
        req: UpstreamRequest,
        pool: str,
        timeouts: Timeouts,
        max_connections: int,
        proxy: SecretStr | None = None,
    ) -> UpstreamStream:
        """Send the request and return once the response headers are in. ``proxy``: the
        provider's ``proxy`` setting (None: the environment decides; see proxy.py)."""
        p, target = self._client.pool(pool, req.url, max_connections, timeouts.connect, proxy)
        wd = _Watchdog(timeouts)
        try:
            resp = await p.request(req.method.encode(), target, req.headers, req.body)
        except asyncio.CancelledError:
            wd.stop()
            if wd.expired is not None:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise wd.timeout_error() from None
            raise
        except http1.ConnectionClosed as e:
            wd.stop()
            raise _connection_error(e, connecting=False) from None
        except http1.ProxyError as e:  # a connect failure: nothing reached the upstream
            wd.stop()
            raise UpstreamUnavailable(
                f"Could not connect to the upstream provider through the proxy: {e}.",
                code="upstream_connect_failed",
            ) from None
        except OSError as e:  # refused, unreachable, TLS failure, connect timeout
            wd.stop()
            raise _connection_error(e, connecting=True) from None
        wd.waiting = False
        return UpstreamStream(resp, wd, timeouts.idle)

    async def send(
        self,
        req: UpstreamRequest,
        pool: str,
        timeouts: Timeouts,
        max_connections: int,
        proxy: SecretStr | None = None,
    ) -> UpstreamResponse:
        """A whole request and response (non-streaming)."""
        s = await self.open(req, pool, timeouts, max_connections, proxy)
        ok = False
        try:
            body = await s.read_all()
            ok = True
        finally:
            s.close(reuse=ok)
        return UpstreamResponse(s.status, s.headers, body)

    async def close(self) -> None:
        self._client.close()
