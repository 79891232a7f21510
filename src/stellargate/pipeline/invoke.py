"""The terminal stage: send the request upstream, with retries and fallbacks, and turn the answer
into the client's dialect.

Two paths per attempt. The identity path (client dialect == provider's native API) forwards bodies
and stream events as they are, reading only usage. The translated path goes through the canonical
model: adapter.translate_* in, dialect.render_* out.

Resilience (pipeline/deployments.py, breaker.py, retry.py): each attempt goes to a deployment the
group's strategy picks, skipping ejected and throttled ones. A failure of a retryable class
(5xx, 429, timeout, connect) is retried on another deployment of the group (or, with backoff and
``Retry-After``, the same one) up to ``routing.retries`` times, then falls back to the model's
``fallbacks`` in order when the class is in its ``fallback_on``; a 400-class error never is. Every
attempt after the first needs the retry budget of the request's first deployment. A stream is
committed when its first byte is ready for the client: until then its status and first chunk can
still fail over; after that, an upstream failure ends it with an error event in the client's dialect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from stellargate.core.request import ChatRequest
from stellargate.errors import GatewayError, InvalidRequest, ServiceUnavailable
from stellargate.media import inline_image_urls
from stellargate.pipeline.context import Context
from stellargate.pipeline.deployments import Attempt, Deployment, Member, ModelGroup
from stellargate.pipeline.estimate import count_prompt_tokens
from stellargate.pipeline.retry import backoff, error_class
from stellargate.pipeline.streams import Primed, relay, translate
from stellargate.providers.base import PassthroughState, UpstreamRequest, UpstreamResponse
from stellargate.providers.errors_common import CONTEXT_OVERFLOW
from stellargate.settings import RoutingSettings
from stellargate.transport import Transport, UpstreamStream
from stellargate.web import Reply, Result, StreamReply

# Decides the identity path: the forwarded request and its stream state, or None to translate.
IdentityPath = Callable[[Context], tuple[UpstreamRequest, PassthroughState] | None]
# One request's prepared upstream requests per deployment, so that a retry re-sends the same bytes.
_Prepared = dict[str, tuple[UpstreamRequest, PassthroughState | None, ChatRequest]]


def chat_identity(ctx: Context) -> tuple[UpstreamRequest, PassthroughState] | None:
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    if req.dialect == target.adapter.native_dialect:
        return target.adapter.passthrough_request(req, target)
    return None


class _Exhausted(Exception):
    """This group cannot carry the request (a fallback that cannot translate it): skip it."""


class _Final(Exception):
    """An error that no other attempt can change (raised after the upstream answered)."""

    def __init__(self, error: GatewayError) -> None:
        self.error = error


class Invoker:
    def __init__(self, transport: Transport, identity: IdentityPath = chat_identity) -> None:
        # `identity` lets an endpoint that is chat underneath (legacy completions) forward its own
        # native body to its own upstream path while sharing everything else here.
        self._transport = transport
        self._identity = identity

    async def __call__(self, ctx: Context) -> Result:
        req, group = ctx.request, ctx.route
        assert req is not None and ctx.target is not None
        if group is None:  # a chain without routing: one attempt on the given target
            dep = Deployment("-", ctx.target.provider, ctx.target.upstream_model, RoutingSettings())
            group = ModelGroup(req.model, [Member(dep, ctx.target)], RoutingSettings(retries=0))
        ctx.streamed = req.stream
        log: list[dict[str, Any]] = []
        err: GatewayError | None = None
        try:
            return await self._run(ctx, group, log)
        except GatewayError as e:
            err = e
            raise
        finally:
            if len(log) > 1:  # a single attempt is the record itself (provider, status, latency)
                ctx.meta["attempts"] = log
            if err is not None and ctx.target is not None:
                err.headers.update(self._headers(ctx, log[-1]["model"] if log else group.name))

    @staticmethod
    def _headers(ctx: Context, model: str) -> dict[str, str]:
        t = ctx.target
        assert t is not None
        return {
            "x-stellargate-model": model,
            "x-stellargate-provider": t.provider,
            "x-stellargate-deployment": f"{t.provider}/{t.upstream_model}",
            "x-stellargate-attempts": str(ctx.attempts),
        }

    async def _candidates(self, ctx: Context, group: ModelGroup) -> list[ModelGroup]:
        """The group, then its fallbacks; a prompt that already overflows the group's window goes
        straight to the fallbacks whose window is larger (decided before sending anything)."""
        window = group.context_window
        if window is None:  # nothing to check: no counting at all
            return [group, *group.fallbacks]
        # The BPE count the limits stage reserved with, else one made now: a characters-per-token
        # guess misjudges code and non-Latin text by a factor of two or more either way.
        tokens = await count_prompt_tokens(ctx)
        if tokens <= window:
            return [group, *group.fallbacks]
        larger = [g for g in group.fallbacks if g.context_window is None or g.context_window >= tokens]
        if "context_window" not in group.fallback_on or not larger:
            raise InvalidRequest(
                f"The prompt (about {tokens} tokens, as the gateway estimates it) exceeds the context "
                f"window of '{group.name}' ({window} tokens).",
                code=CONTEXT_OVERFLOW,
                param="messages",
            )
        ctx.meta["context_fallback"] = True
        return larger

    async def _run(self, ctx: Context, group: ModelGroup, log: list[dict[str, Any]]) -> Result:
        policy = group.policy
        prepared: _Prepared = {}
        last: GatewayError | None = None
        cls: str | None = None
        first: Deployment | None = None  # its budget pays for every further attempt
        prev = group
        for gi, g in enumerate(await self._candidates(ctx, group)):
            if gi and last is not None:
                if cls not in prev.fallback_on:
                    break
                if (
                    cls == "context_window"
                    and g.context_window is not None
                    and prev.context_window is not None
                    and g.context_window <= prev.context_window
                ):
                    continue  # known to be no larger; an unknown window is worth the try
            prev = g
            tried: list[str] = []
            for retry in range(policy.retries + 1):
                now = time.monotonic()
                m = g.pick(now, tried)
                if m is None and retry and last is not None:
                    # Only deployments that failed this request remain: wait, then try one again.
                    wait = backoff(retry - 1, policy.backoff)
                    if cls == "429" and last.retry_after is not None:
                        if last.retry_after > policy.max_retry_wait:
                            break
                        wait = max(wait, last.retry_after)
                    if first is not None and not first.budget.withdraw(now):
                        ctx.meta["retry_budget_exhausted"] = True
                        raise last
                    await asyncio.sleep(wait)
                    m = g.pick(time.monotonic())
                    if m is None:
                        break
                elif m is None:
                    if last is None:
                        last, cls = _none_available(g), "5xx"
                    break
                elif first is not None and ctx.attempts and not first.budget.withdraw(now):
                    ctx.meta["retry_budget_exhausted"] = True
                    raise last or _none_available(g)
                if first is None:
                    first = m.deployment
                    first.budget.deposit(now)
                try:
                    result = await self._attempt(ctx, g, m, prepared, log)
                except _Exhausted:
                    break  # this group cannot carry the request: try the fallbacks
                except _Final as f:
                    raise f.error from None
                except GatewayError as e:
                    last, cls = e, error_class(e)
                    if cls is None:
                        raise
                    tried.append(m.deployment.id)
                    if cls == "context_window":
                        break
                    continue
                if g is not group:
                    ctx.meta["model_served"] = g.name
                result.headers.extend((k.encode(), v.encode()) for k, v in self._headers(ctx, g.name).items())
                return result
        raise last or _none_available(group)

    def _prepare(
        self, ctx: Context, m: Member, prepared: _Prepared
    ) -> tuple[UpstreamRequest, PassthroughState | None, ChatRequest]:
        did = m.deployment.id
        p = prepared.get(did)
        if p is None:
            forward = self._identity(ctx)
            req = ctx.request
            assert req is not None
            if forward is not None:
                p = (forward[0], forward[1], req)
            else:
                up = m.target.adapter.translate_request(req, m.target)
                p = (up, None, req)
            prepared[did] = p
        up_req, ps, req = p
        # Stream state is per attempt: a failed attempt must not leave usage or flags behind.
        return up_req, None if ps is None else dataclasses.replace(ps, extra=dict(ps.extra)), req

    async def _attempt(
        self, ctx: Context, g: ModelGroup, m: Member, prepared: _Prepared, log: list[dict[str, Any]]
    ) -> Result:
        target = m.target
        ctx.target = target
        try:
            if not target.adapter.capabilities.image_urls and m.deployment.id not in prepared:
                req0 = ctx.request
                assert req0 is not None
                # Adapters do no I/O: fetch image URLs here for a provider that takes only inline data.
                ctx.request = await inline_image_urls(req0, allow_private=target.settings.allow_private_media)
                try:
                    up_req, ps, req = self._prepare(ctx, m, prepared)
                finally:
                    ctx.request = req0
            else:
                up_req, ps, req = self._prepare(ctx, m, prepared)
        except InvalidRequest:
            if ctx.attempts == 0 and g is ctx.route:
                raise
            raise _Exhausted from None  # a fallback that cannot carry this request is skipped
        if req.stream and ps is None and getattr(ctx.dialect, "prompt_at_start", False):
            await count_prompt_tokens(ctx)  # the translated stream's first event states it
        entry: dict[str, Any] = {"model": g.name, "deployment": m.deployment.id, "provider": target.provider}
        log.append(entry)
        ctx.attempts += 1
        att = Attempt(m.deployment, entry)
        adapter, dialect, tm = target.adapter, ctx.dialect, target.timeouts
        try:
            if not req.stream:
                resp = await self._transport.send(
                    up_req, target.provider, tm, target.settings.max_connections, target.settings.proxy
                )
                if resp.status >= 400:
                    raise adapter.map_error(resp)
                out = None if ps is not None else adapter.translate_response(resp, req, target)
                ctx.usage = adapter.passthrough_usage(resp.body) if out is None else out.usage
                att.ok()
                att.release(ctx.usage.total_tokens if ctx.usage is not None else 0)
                if out is None:
                    return Reply(200, resp.body)
                try:
                    return Reply(200, dialect.render_response(out, req))
                except GatewayError as e:  # the dialect refused a good answer: not the upstream's fault
                    raise _Final(e) from None
            up = await self._transport.open(
                up_req, target.provider, tm, target.settings.max_connections, target.settings.proxy
            )
            if up.status >= 400:
                raise adapter.map_error(await _error_body(up))
        except GatewayError as e:
            att.fail(e)
            att.release()
            raise
        except BaseException:
            att.release()
            raise
        gen = relay(ctx, up, adapter, ps, att) if ps is not None else translate(ctx, up, att)
        try:
            head = await gen.__anext__()
        except StopAsyncIteration:
            head = b""
        return StreamReply(Primed(head, gen))


def _none_available(g: ModelGroup) -> GatewayError:
    return ServiceUnavailable(
        f"No deployment of '{g.name}' can take a request now (ejected, throttled or at its limit).",
        code="no_healthy_deployment",
    )


async def _error_body(up: UpstreamStream) -> UpstreamResponse:
    ok = False
    try:
        body = await up.read_all()
        ok = True
    finally:
        up.close(reuse=ok)
    return UpstreamResponse(up.status, up.headers, body)
