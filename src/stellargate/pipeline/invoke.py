"""The terminal stage: send the request upstream and turn the answer into the client's dialect.

Two paths. The identity path (client dialect == provider's native API) forwards bodies and
stream events as they are, reading only usage. The translated path goes through the canonical
model: adapter.translate_* in, dialect.render_* out. Either way, once a stream has started, an
upstream failure ends it with an error event in the client's dialect, never a silent truncation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from stellargate.core.stream import Finish, StreamFailed, UsageReport
from stellargate.dialects.sse import SSEDecoder
from stellargate.errors import GatewayError, UpstreamError
from stellargate.media import inline_image_urls
from stellargate.pipeline.context import Context
from stellargate.providers.base import (
    PassthroughState,
    ProviderAdapter,
    Target,
    UpstreamRequest,
    UpstreamResponse,
)
from stellargate.transport import Transport, UpstreamStream
from stellargate.web import Reply, Result, StreamReply

# Decides the identity path: the forwarded request and its stream state, or None to translate.
IdentityPath = Callable[[Context], tuple[UpstreamRequest, PassthroughState] | None]


def chat_identity(ctx: Context) -> tuple[UpstreamRequest, PassthroughState] | None:
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    if req.dialect == target.adapter.native_dialect:
        return target.adapter.passthrough_request(req, target)
    return None


class Invoker:
    def __init__(self, transport: Transport, identity: IdentityPath = chat_identity) -> None:
        # `identity` lets an endpoint that is chat underneath (legacy completions) forward its own
        # native body to its own upstream path while sharing everything else here.
        self._transport = transport
        self._identity = identity

    async def __call__(self, ctx: Context) -> Result:
        req, target = ctx.request, ctx.target
        assert req is not None and target is not None
        adapter = target.adapter
        forward = self._identity(ctx)
        identity = forward is not None
        if forward is not None:
            up_req, pstate = forward
        else:
            if not adapter.capabilities.image_urls:
                # Adapters do no I/O: fetch image URLs here for a provider that takes only inline data.
                req = await inline_image_urls(req, allow_private=target.settings.allow_private_media)
            up_req, pstate = adapter.translate_request(req, target), None
        ctx.streamed = req.stream
        ctx.attempts += 1
        if not req.stream:
            resp = await self._transport.send(
                up_req, target.provider, target.timeouts, target.settings.max_connections
            )
            if resp.status >= 400:
                raise adapter.map_error(resp)
            if identity:
                ctx.usage = adapter.passthrough_usage(resp.body)
                return Reply(200, resp.body)
            out = adapter.translate_response(resp, req, target)
            ctx.usage = out.usage
            return Reply(200, ctx.dialect.render_response(out, req))

        up = await self._open(up_req, target)
        if up.status >= 400:
            raise adapter.map_error(await self._error_body(up))
        if pstate is not None:
            return StreamReply(self._relay(ctx, up, adapter, pstate))
        return StreamReply(self._translate(ctx, up))

    async def _open(self, up_req: UpstreamRequest, target: Target) -> UpstreamStream:
        return await self._transport.open(
            up_req, target.provider, target.timeouts, target.settings.max_connections
        )

    @staticmethod
    async def _error_body(up: UpstreamStream) -> UpstreamResponse:
        ok = False
        try:
            body = await up.read_all()
            ok = True
        finally:
            up.close(reuse=ok)
        return UpstreamResponse(up.status, up.headers, body)

    async def _relay(
        self, ctx: Context, up: UpstreamStream, adapter: ProviderAdapter, ps: PassthroughState
    ) -> AsyncIterator[bytes]:
        forward = adapter.passthrough_stream_event
        decoder = SSEDecoder()
        ok = False
        try:
            try:
                async for data in up.chunks():
                    out = [b for ev in decoder.feed(data) if (b := forward(ev, ps))]
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
                tail = [b for ev in decoder.flush() if (b := forward(ev, ps))]
                if tail:
                    yield b"".join(tail)
                ok = True
            except GatewayError as e:
                ctx.status, ctx.error_code = e.http_status, e.code
                yield ctx.dialect.render_stream_error(e, ctx.request_id)
        finally:
            ctx.usage = ps.usage
            up.close(reuse=ok)

    async def _translate(self, ctx: Context, up: UpstreamStream) -> AsyncIterator[bytes]:
        req, target = ctx.request, ctx.target
        assert req is not None and target is not None
        adapter, dialect = target.adapter, ctx.dialect
        state = adapter.new_stream_state(req)
        rstate = dialect.new_render_state(req)
        decoder = SSEDecoder()
        ok = finished = False
        try:
            try:
                async for data in up.chunks():
                    out = []
                    for ev in decoder.feed(data):
                        for ce in adapter.translate_stream_event(ev, state):
                            if isinstance(ce, UsageReport):
                                ctx.usage = ce.usage
                            elif isinstance(ce, Finish):
                                finished = True
                            elif isinstance(ce, StreamFailed):
                                raise ce.error
                            b = dialect.render_stream_event(ce, rstate)
                            if b:
                                out.append(b)
                    if out:
                        yield b"".join(out)
                if not finished:
                    raise UpstreamError(
                        "The upstream stream ended before the answer was complete.",
                        code="upstream_incomplete_stream",
                    )
                ok = True
                yield dialect.render_stream_end(rstate)
            except GatewayError as e:
                ctx.status, ctx.error_code = e.http_status, e.code
                yield dialect.render_stream_error(e, ctx.request_id)
        finally:
            up.close(reuse=ok)
