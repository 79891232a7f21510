"""Limits and budgets: reserve the worst case before the upstream call, settle the real use after.

Runs after routing (and the route's checks), when the target's price and the request's maximum
tokens are known, and inside ``UsageStage``, so a refusal still leaves a usage record. The
reservation covers one request, the prompt tokens (counted, see ``estimate``) plus the most
completion tokens, and the most it may cost; it is settled to the real usage once the response,
the stream, an error or the client's disconnect ends the call, and refunded whole when the
upstream was never called. Every answer carries the rate-limit headers.
"""

from __future__ import annotations

import math

from stellargate.core.usage import Price
from stellargate.counters import CounterUnavailable, Decision, Item, refund
from stellargate.counters.memory import MemoryCounterStore
from stellargate.counters.policy import NANO, CallLimits, Spec
from stellargate.counters.service import Limits
from stellargate.errors import GatewayError, PermissionDenied, RateLimited, ServiceUnavailable
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.estimate import (
    PromptScale,
    choices,
    encoding_for,
    is_ready,
    max_completion_tokens,
    ready,
    worst_case,
)
from stellargate.pipeline.usage import final_usage
from stellargate.providers.base import Target
from stellargate.web import Result, StreamReply

# What is left of a rate is computed from arrival times in float seconds, so 49 can come out as
# 48.99999999997: the headers show whole requests and tokens, floored past this rounding error.
SHOWN_EPS = 1e-6
SLOT_GRACE = 30.0  # seconds past the total timeout before a lost concurrency slot expires on Redis


class QuotaExceeded(RateLimited):
    kind = "insufficient_quota"
    default_code = "insufficient_quota"


def worst_cost(price: Price | None, prompt: int, completion: int, images: int) -> float:
    if price is None:
        return 0.0
    rate_in = max(price.input, price.cache_write or 0.0)  # a prompt written to a cache may cost more
    return (prompt * rate_in + completion * price.output) / 1_000_000 + images * (price.per_image or 0.0)


def _duration(s: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if s < 1:
        return f"{max(0, math.ceil(s * 1000))}ms"
    whole = math.ceil(s)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec}s"


_resets: dict[int, bytes] = {}


def _reset_key(s: float) -> int:
    # ms below a second, whole seconds above (written out inline in rate_headers, which runs per request)
    return math.ceil(s * 1000) if s < 1 else -math.ceil(s)


def _reset_text(s: float) -> bytes:
    """``_duration`` as bytes, remembered in ``_resets``: the same few resets recur in every answer."""
    if len(_resets) >= 10_000:
        _resets.clear()
    found = _resets[_reset_key(s)] = _duration(s).encode()
    return found


def rate_headers(call: CallLimits, d: Decision) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*-requests|tokens`` and ``X-RateLimit-*`` for the tightest request limit."""
    req, tok = call.req_index, call.tok_index
    if req == -2 or tok == -2:  # several of a kind: the one with the least left
        req, tok = call.tightest(d.remaining)
    remaining, reset = d.remaining, d.reset
    out: list[tuple[bytes, bytes]]
    if req >= 0:
        lim, rem, rst = call.limit_bytes[req], b"%d" % (remaining[req] + SHOWN_EPS), reset[req]
        text = _resets.get(math.ceil(rst * 1000) if rst < 1 else -math.ceil(rst)) or _reset_text(rst)
        out = [
            (b"x-ratelimit-limit-requests", lim),
            (b"x-ratelimit-remaining-requests", rem),
            (b"x-ratelimit-reset-requests", text),
            (b"x-ratelimit-limit", lim),
            (b"x-ratelimit-remaining", rem),
            (b"x-ratelimit-reset", b"%d" % math.ceil(rst)),
        ]
    else:
        out = []
    if tok >= 0:
        rst = reset[tok]
        text = _resets.get(math.ceil(rst * 1000) if rst < 1 else -math.ceil(rst)) or _reset_text(rst)
        out.append((b"x-ratelimit-limit-tokens", call.limit_bytes[tok]))
        out.append((b"x-ratelimit-remaining-tokens", b"%d" % (remaining[tok] + SHOWN_EPS)))
        out.append((b"x-ratelimit-reset-tokens", text))
    return out


def refusal(spec: Spec, d: Decision) -> GatewayError:
    retry = max(d.retry_after, 0.001)
    if spec.kind == "q":
        what = "spend budget" if spec.unit == "usd" else "token quota"
        msg = f"This API key's {what} ({spec.name}: {spec.limit:g}) is used up for this period."
        if spec.unit == "usd":
            return PermissionDenied(msg, code="budget_exceeded", retry_after=retry)
        return QuotaExceeded(msg, code="insufficient_quota", retry_after=retry)
    if spec.kind == "c":
        return RateLimited(
            f"This API key already has {spec.limit:g} requests in flight (its concurrency limit).",
            code="concurrency_exceeded",
            retry_after=retry,
        )
    if spec.unit == "tokens":
        return RateLimited(
            f"This request's worst case exceeds what is left of the token rate limit ({spec.name}: "
            f"{spec.limit:g}).",
            code="tokens_exceeded",
            retry_after=retry,
        )
    return RateLimited(
        f"Rate limit reached for this API key ({spec.name}: {spec.limit:g}).",
        code="rate_limit_exceeded",
        retry_after=retry,
    )


class _Settlement:
    """Settles one reservation once, whichever comes first: the answer, the stream's end (as a
    ``StreamReply.on_done`` callback), an error or a cancellation."""

    __slots__ = ("call", "counted", "ctx", "done", "items", "limits", "nano", "scale", "target", "tokens")

    def __init__(
        self,
        limits: Limits,
        ctx: Context,
        call: CallLimits,
        items: list[Item],
        scale: PromptScale,
        reserved: tuple[int, int, int],  # the prompt as counted, then the tokens and nano-USD reserved
    ) -> None:
        self.limits, self.ctx, self.call, self.items, self.scale = limits, ctx, call, items, scale
        assert ctx.target is not None
        self.target = ctx.target  # the one reserved for
        self.done = False
        self.counted, self.tokens, self.nano = reserved

    def __call__(self, completed: bool = True) -> None:
        if self.done:
            return
        self.done = True
        ctx, items, store, target = self.ctx, self.items, self.limits.store, self.target
        if not ctx.attempts:
            refund(store, items, ctx.request_id)  # never reached the upstream: nothing was used
            return
        u = ctx.usage
        if u is None:
            u, _ = final_usage(ctx)
        elif self.counted and not ctx.usage_estimated and ctx.target is target:
            # Only from the target counted for (a fallback may have answered instead).
            self.scale.observe(target.upstream_model, self.counted, u.prompt_tokens)
        nano = 0
        if self.call.prices:
            t = ctx.target
            nano = round(t.price.cost(u) * NANO) if t is not None and t.price is not None else 0
        tokens = u.prompt_tokens + u.completion_tokens
        if (tokens > self.tokens or nano > self.nano) and self.call.counts_tokens:
            self.limits.overshot(target.upstream_model, tokens, self.tokens)
        store.settle(items, ctx.request_id, self.call.settled(tokens, nano))


class LimitStage:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        # In process, reserving needs no await: called directly, it saves a coroutine per request.
        store = limits.store
        self._reserve_now = store.reserve_now if isinstance(store, MemoryCounterStore) else None
        self.scale = PromptScale()

    def _dearest(
        self, targets: tuple[Target, ...], ctx: Context, counted: int, completion: int, images: int
    ) -> tuple[int, int, float, float]:
        """(prompt, completion, cost, scale) at the most any of ``targets`` may take: each figure
        the highest over them, so the reservation covers whichever answers."""
        req, scale = ctx.request, self.scale
        prompt, cost, factor = 0, 0.0, 1.0
        n = choices(req) if req is not None else 1
        for t in targets:
            f = scale.factor(t.upstream_model)
            p = counted if f == 1.0 else math.ceil(counted * f)
            c = max_completion_tokens(req, t, counted) * n if req is not None else completion
            prompt, factor = max(prompt, p), max(factor, f)
            completion, cost = max(completion, c), max(cost, worst_cost(t.price, p, c, images))
        return prompt, completion, cost, factor

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        assert ctx.key is not None and ctx.target is not None
        lim = self._limits
        call = lim.policy.for_call(ctx.key, ctx.endpoint)
        if call is None:
            return await call_next(ctx)
        target = ctx.target
        tokens = nano = counted = 0
        if call.counts_tokens:
            encoding = encoding_for(target.upstream_model)
            if not is_ready(encoding):
                await ready(encoding)
            counted, completion, images = worst_case(ctx.payload, ctx.request, target, encoding)
            targets = ctx.route.targets() if ctx.route is not None else ()
            if len(targets) > 1:  # a retry or a fallback may land on a dearer one
                prompt, completion, cost, factor = self._dearest(targets, ctx, counted, completion, images)
            else:
                # What the provider will report: our count, scaled by what its reports taught us.
                factor = self.scale.factor(target.upstream_model)
                prompt = counted if factor == 1.0 else math.ceil(counted * factor)
                cost = worst_cost(target.price, prompt, completion, images)
            ctx.meta["reserved"] = {
                "prompt_tokens": prompt,
                "prompt_scale": factor,  # prompt_tokens is the count times this (PromptScale)
                "completion_tokens": completion,
                "cost_usd": cost,
            }
            tokens, nano = prompt + completion, math.ceil(cost * NANO)
        items = call.items(tokens, nano, target.timeouts.total + SLOT_GRACE)
        try:
            if self._reserve_now is not None:
                d = self._reserve_now(items, ctx.request_id)
            else:
                d = await lim.store.reserve(items, ctx.request_id)
        except CounterUnavailable as e:
            if lim.fail_open and not call.fails_closed:
                lim.outage(True, e)
                return await call_next(ctx)
            lim.outage(False, e)
            raise ServiceUnavailable(
                "The gateway cannot check this key's limits and budgets right now; retry shortly.",
                code="limits_unavailable",
                retry_after=1,
            ) from None
        headers = rate_headers(call, d)
        if not d.ok:
            err = refusal(call.specs[d.failed], d)
            err.headers.update((k.decode(), v.decode()) for k, v in headers)
            raise err
        settle = _Settlement(lim, ctx, call, items, self.scale, (counted, tokens, nano))
        try:
            result = await call_next(ctx)
        except GatewayError as e:
            settle()
            for k, v in headers:
                e.headers.setdefault(k.decode(), v.decode())
            raise
        except BaseException:
            settle()  # cancelled (the client left) or a bug: release the slot, charge what was used
            raise
        result.headers += headers
        if isinstance(result, StreamReply):
            result.on_done.append(settle)
        else:
            settle()
        return result
