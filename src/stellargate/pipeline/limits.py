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
from collections.abc import Sequence

from stellargate.core.usage import Price
from stellargate.counters import CounterUnavailable, Decision, Item, refund
from stellargate.counters.policy import NANO, Spec, items_for
from stellargate.counters.service import Limits
from stellargate.errors import GatewayError, PermissionDenied, RateLimited, ServiceUnavailable
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.estimate import encoding_for, is_ready, ready, worst_case
from stellargate.pipeline.usage import final_usage
from stellargate.web import Result, StreamReply

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


def rate_headers(specs: Sequence[Spec], d: Decision) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*-requests|tokens`` and ``X-RateLimit-*`` for the tightest request limit."""
    req = tok = -1
    for i, s in enumerate(specs):
        if s.kind != "r":
            continue
        if s.unit == "requests" and (req < 0 or d.remaining[i] < d.remaining[req]):
            req = i
        elif s.unit == "tokens" and (tok < 0 or d.remaining[i] < d.remaining[tok]):
            tok = i
    out: list[tuple[bytes, bytes]] = []
    if req >= 0:
        lim, rem, rst = str(int(specs[req].limit)).encode(), str(int(d.remaining[req])).encode(), d.reset[req]
        out += [
            (b"x-ratelimit-limit-requests", lim),
            (b"x-ratelimit-remaining-requests", rem),
            (b"x-ratelimit-reset-requests", _duration(rst).encode()),
            (b"x-ratelimit-limit", lim),
            (b"x-ratelimit-remaining", rem),
            (b"x-ratelimit-reset", str(math.ceil(rst)).encode()),
        ]
    if tok >= 0:
        out += [
            (b"x-ratelimit-limit-tokens", str(int(specs[tok].limit)).encode()),
            (b"x-ratelimit-remaining-tokens", str(int(d.remaining[tok])).encode()),
            (b"x-ratelimit-reset-tokens", _duration(d.reset[tok]).encode()),
        ]
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


class LimitStage:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        assert ctx.key is not None and ctx.target is not None
        lim = self._limits
        specs = lim.policy.specs(ctx.key, ctx.endpoint)
        if not specs:
            return await call_next(ctx)
        target = ctx.target
        prompt = completion = 0
        cost = 0.0
        if any(s.unit != "requests" for s in specs):
            # Counting tokens costs a few µs: only when a token or spend limit needs the figure.
            encoding = encoding_for(target.upstream_model)
            if not is_ready(encoding):
                await ready(encoding)
            prompt, completion, images = worst_case(ctx.payload, ctx.request, target)
            cost = worst_cost(target.price, prompt, completion, images)
            ctx.meta["reserved"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cost_usd": cost,
            }
        items = items_for(
            ctx.key.id,
            specs,
            tokens=prompt + completion,
            nano_usd=math.ceil(cost * NANO),
            slot_seconds=target.timeouts.total + SLOT_GRACE,
        )
        try:
            d = await lim.store.reserve(items, ctx.request_id)
        except CounterUnavailable as e:
            if lim.fail_open and not any(s.fails_closed for s in specs):
                lim.outage(True, e)
                return await call_next(ctx)
            lim.outage(False, e)
            raise ServiceUnavailable(
                "The gateway cannot check this key's limits and budgets right now; retry shortly.",
                code="limits_unavailable",
                retry_after=1,
            ) from None
        headers = rate_headers(specs, d)
        if not d.ok:
            err = refusal(specs[d.failed], d)
            err.headers.update((k.decode(), v.decode()) for k, v in headers)
            raise err
        settled = False

        def settle() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            self._settle(ctx, specs, items)

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
        result.headers.extend(headers)
        if isinstance(result, StreamReply):
            result.on_done.append(lambda completed: settle())
        else:
            settle()
        return result

    def _settle(self, ctx: Context, specs: Sequence[Spec], items: Sequence[Item]) -> None:
        store = self._limits.store
        if not ctx.attempts:
            refund(store, items, ctx.request_id)  # never reached the upstream: nothing was used
            return
        u, _ = final_usage(ctx)
        t = ctx.target
        spent = t.price.cost(u) if t is not None and t.price is not None else 0.0
        actual: list[float] = []
        for s, it in zip(specs, items, strict=True):
            if s.unit == "requests":
                actual.append(it.cost)
            elif s.unit == "tokens":
                actual.append(u.total_tokens)
            else:
                actual.append(round(spent * NANO))
        store.settle(items, ctx.request_id, actual)
