"""The standard stage chain of a model call, assembled in one place for every route.

``AuthStage → IdempotencyStage → UsageStage → parse → RoutingStage → (checks) → LimitStage →
Invoker``: the usage stage sits right after auth (and the idempotency check, whose replays are
not model calls), so that every authenticated call leaves a record, refused ones included. A route
varies only what it must: its own authentication (the task API), its parse stage (non-chat
bodies), checks that need the target (what a dialect cannot translate), and its terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stellargate.core.request import ChatRequest
from stellargate.errors import InvalidRequest
from stellargate.pipeline.auth import AuthStage
from stellargate.pipeline.context import Context, Next, Stage, chain
from stellargate.pipeline.idempotency import IdempotencyStage
from stellargate.pipeline.invoke import Invoker
from stellargate.pipeline.limits import LimitStage
from stellargate.pipeline.routing import RoutingStage
from stellargate.pipeline.usage import UsageStage
from stellargate.runtime import Runtime
from stellargate.web import Result


async def parse_chat(ctx: Context, call_next: Next) -> Result:
    """Parse the body into the canonical ChatRequest with the context's dialect."""
    ctx.request = ctx.dialect.parse_request(ctx.http.json(), ctx.http)
    return await call_next(ctx)


def translatable(untranslatable: Callable[[ChatRequest], InvalidRequest | None]) -> Stage:
    """A check that refuses, by the dialect's ``untranslatable`` rule, a request the target would
    serve by translation but cannot carry (the identity path forwards everything)."""

    async def check(ctx: Context, call_next: Next) -> Result:
        assert ctx.request is not None and ctx.target is not None
        if ctx.target.adapter.native_dialect != ctx.request.dialect:
            err = untranslatable(ctx.request)
            if err is not None:
                raise err
        return await call_next(ctx)

    return check


def model_chain(
    rt: Runtime,
    *,
    auth: Stage | None = None,
    parse: Stage = parse_chat,
    checks: Sequence[Stage] = (),
    terminal: Next | None = None,
) -> Next:
    """The standard chain, composed once: ``auth`` defaults to ``AuthStage`` on the key cache,
    ``terminal`` to the chat ``Invoker``; ``checks`` run after routing."""
    stages: list[Stage] = [
        auth or AuthStage(rt.keys),
        # Before usage and limits: a replay or an idempotency conflict is not a model call.
        IdempotencyStage(rt.idempotency),
        UsageStage(
            rt.outbox,
            rt.usage_observers,
            log_prompts=rt.settings.prompt_logging == "per_key",
            prompt_max_chars=rt.settings.prompt_log_max_chars,
        ),
        parse,
        RoutingStage(rt.models),
        *checks,
    ]
    if rt.limits is not None:
        # Last: the target's price and the request's maximum tokens are known, and a request the
        # checks refuse never reserves anything.
        stages.append(LimitStage(rt.limits))
    return chain(stages, terminal or Invoker(rt.transport))
