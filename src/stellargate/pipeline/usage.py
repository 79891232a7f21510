"""Settle every model call into exactly one usage record, sent to the outbox (never the database)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from stellargate.core.request import ChatRequest
from stellargate.core.usage import Usage, UsageRecord
from stellargate.errors import GatewayError
from stellargate.pipeline.context import Context, Next
from stellargate.promptlog import Transcript
from stellargate.promptlog import write as write_prompt_log
from stellargate.storage.outbox import UsageOutbox
from stellargate.web import Result, StreamReply

log = logging.getLogger("stellargate.usage")


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """A rough count (4 characters a token) for upstreams that report no usage."""
    chars = sum(len(m.text()) + 4 for m in req.messages)
    return max(1, chars // 4)


def final_usage(ctx: Context) -> tuple[Usage, bool]:
    """The usage a call is metered (and its limits settled) at, and whether it was estimated."""
    u = ctx.usage
    if u is None and ctx.request is not None and ctx.target is not None and ctx.attempts:
        # The upstream was called but reported nothing: never meter a call as free. A BPE count a
        # stage already made beats the characters-per-token guess; none is made just for this.
        counted = ctx.counted_prompt_tokens()
        prompt = counted if counted is not None else estimate_prompt_tokens(ctx.request)
        return Usage(prompt_tokens=prompt), True
    return u or Usage(), ctx.usage_estimated


# Told of every finished call (metrics, security audit); each must be O(1) and never raise.
UsageObserver = Callable[[UsageRecord, Context], None]


class UsageStage:
    """Also where a key's ``log_prompts`` switch acts (promptlog.py): this stage already sees every
    call's answer and the end of its stream, so the switch needs no stage of its own."""

    def __init__(
        self,
        outbox: UsageOutbox,
        observers: Sequence[UsageObserver] = (),
        *,
        log_prompts: bool = True,
        prompt_max_chars: int = 0,
    ) -> None:
        self._outbox = outbox
        self._observers = tuple(observers)
        self._log_prompts = log_prompts  # False: the config forbids prompt logging (prompt_logging: off)
        self._prompt_max = prompt_max_chars

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        key = ctx.key
        if key is not None and key.log_prompts and self._log_prompts:
            ctx.transcript = Transcript(ctx.dialect, self._prompt_max)
        try:
            result = await call_next(ctx)
        except GatewayError as e:
            ctx.status, ctx.error_code = e.http_status, e.code
            self.record(ctx)
            raise
        except asyncio.CancelledError:
            ctx.status, ctx.error_code = 499, "client_closed_request"
            self.record(ctx)
            raise
        if ctx.transcript is not None:
            ctx.transcript.watch(ctx, result)
        if isinstance(result, StreamReply):
            result.on_done.append(lambda completed: self._stream_done(ctx, result, completed))
        else:
            ctx.status = result.status
            self.record(ctx)
        return result

    def _stream_done(self, ctx: Context, reply: StreamReply, completed: bool) -> None:
        if reply.first_chunk_at is not None:
            ctx.ttft_ms = (reply.first_chunk_at - ctx.http.t0) * 1000
        if not completed and ctx.error_code is None:
            ctx.status, ctx.error_code = 499, "client_closed_request"
        self.record(ctx)

    def record(self, ctx: Context) -> None:
        req, t = ctx.request, ctx.target
        u, estimated = final_usage(ctx)
        cost = t.price.cost(u) if t is not None and t.price is not None else 0.0
        if t is not None and t.price is None and ctx.attempts:
            # Neither the config nor the bundled table knows this model: say so, never look free.
            ctx.meta["unpriced"] = True
        rec = UsageRecord(
            request_id=ctx.request_id,
            created_at=ctx.http.arrival,
            key_id=ctx.key.id if ctx.key else None,
            endpoint=ctx.endpoint,
            dialect=ctx.dialect.name,
            model=req.model if req else ctx.model,
            provider=t.provider if t else None,
            upstream_model=t.upstream_model if t else None,
            status=ctx.status,
            streamed=ctx.streamed,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            cached_tokens=u.cached_tokens,
            cache_creation_tokens=u.cache_creation_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - ctx.http.t0) * 1000,
            ttft_ms=ctx.ttft_ms,
            error_code=ctx.error_code,
            usage_estimated=estimated,
            attempts=ctx.attempts,
            meta=ctx.meta,
        )
        for observe in self._observers:
            try:
                observe(rec, ctx)
            except Exception:  # telemetry must never fail a request
                log.exception("usage observer failed")
        if ctx.transcript is not None:
            try:
                write_prompt_log(rec, ctx, self._prompt_max)
            except Exception:
                log.exception("prompt log failed")
        try:
            self._outbox.add(rec)
        except RuntimeError:
            # Only after shutdown closed the outbox (a stream outliving the grace period).
            log.error("usage record after shutdown, not stored: %s", rec.to_dict())
