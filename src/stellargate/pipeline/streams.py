"""The two stream paths of the Invoker, and the commit point between failing over and failing late.

Each generator yields the client's bytes. Until its first yield, a failure is raised (the Invoker
may still retry or fall back: nothing has reached the client); after it, a failure ends the stream
with an error event in the client's dialect, never a silent truncation. The Invoker pulls the first
chunk itself, inside its retry loop, and hands the rest to the server through ``Primed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from stellargate.core.stream import Finish, StreamFailed, StreamStart, UsageReport
from stellargate.dialects.sse import SSEDecoder
from stellargate.errors import GatewayError, UpstreamError
from stellargate.pipeline.context import Context
from stellargate.pipeline.deployments import Attempt
from stellargate.providers.base import PassthroughState, ProviderAdapter
from stellargate.transport import UpstreamStream


class Primed:
    """An async iterator that gives an already-pulled first chunk, then the rest of a generator.
    A class rather than a wrapping generator: no extra frame to resume per chunk."""

    __slots__ = ("_gen", "_head")

    def __init__(self, head: bytes, gen: AsyncIterator[bytes]) -> None:
        self._head: bytes | None = head or None
        self._gen = gen

    def __aiter__(self) -> Primed:
        return self

    async def __anext__(self) -> bytes:
        head = self._head
        if head is not None:
            self._head = None
            return head
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        aclose: Any = getattr(self._gen, "aclose", None)
        if aclose is not None:
            await aclose()


def _tokens(ctx: Context) -> int:
    return ctx.usage.total_tokens if ctx.usage is not None else 0


async def relay(
    ctx: Context, up: UpstreamStream, adapter: ProviderAdapter, ps: PassthroughState, att: Attempt
) -> AsyncIterator[bytes]:
    """The identity path: events forwarded as received; only usage is read."""
    forward = adapter.passthrough_stream_event
    decoder = SSEDecoder()
    ok = started = False
    try:
        try:
            async for data in up.chunks():
                out = [b for ev in decoder.feed(data) if (b := forward(ev, ps))]
                if out:
                    if not started:
                        started = True
                        att.ok()
                    yield out[0] if len(out) == 1 else b"".join(out)
            tail = [b for ev in decoder.flush() if (b := forward(ev, ps))]
            att.ok()
            if tail:
                yield b"".join(tail)
            ok = True
        except GatewayError as e:
            att.fail(e)
            if not started:
                raise
            ctx.status, ctx.error_code = e.http_status, e.code
            yield ctx.dialect.render_stream_error(e, ctx.request_id)
    finally:
        ctx.usage = ps.usage
        up.close(reuse=ok)
        att.release(_tokens(ctx))


async def translate(ctx: Context, up: UpstreamStream, att: Attempt) -> AsyncIterator[bytes]:
    """The translated path: provider events → canonical events → the client's dialect."""
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    adapter, dialect = target.adapter, ctx.dialect
    state = adapter.new_stream_state(req)
    rstate = dialect.new_render_state(req)
    decoder = SSEDecoder()
    ok = finished = started = False
    try:
        try:
            async for data in up.chunks():
                out = []
                for ev in decoder.feed(data):
                    for ce in adapter.translate_stream_event(ev, state):
                        if isinstance(ce, UsageReport):
                            ctx.usage = ce.usage
                        elif isinstance(ce, StreamStart) and ce.prompt_tokens is None:
                            ce.prompt_tokens = ctx.counted_prompt_tokens()
                        elif isinstance(ce, Finish):
                            finished = True
                        elif isinstance(ce, StreamFailed):
                            raise ce.error
                        b = dialect.render_stream_event(ce, rstate)
                        if b:
                            out.append(b)
                if out:
                    if not started:
                        started = True
                        att.ok()
                    yield b"".join(out)
            if not finished:
                raise UpstreamError(
                    "The upstream stream ended before the answer was complete.",
                    code="upstream_incomplete_stream",
                )
            ok = True
            att.ok()
            yield dialect.render_stream_end(rstate)
        except GatewayError as e:
            att.fail(e)
            if not started:
                raise
            ctx.status, ctx.error_code = e.http_status, e.code
            yield dialect.render_stream_error(e, ctx.request_id)
    finally:
        up.close(reuse=ok)
        att.release(_tokens(ctx))
