"""CPU the limits stage adds to one request, measured in-process (process CPU time, so other
load on the machine does not count): a request through ``LimitStage`` with the figures of
``bench/gateway.yaml`` (request rate, token rate, concurrency, a daily spend budget) against the
same request with every limit lifted, on the in-process store and on Redis.

    .venv/bin/python bench/limits_overhead.py [--redis redis://127.0.0.1:6379/0] [-n 20000] [-c 32]

Redis settlements run as background tasks; their CPU is counted (the loop runs until they end).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import orjson

from stellargate.core.usage import Usage
from stellargate.counters.memory import MemoryCounterStore
from stellargate.counters.policy import Policy
from stellargate.counters.redis import RedisCounterStore
from stellargate.counters.service import Limits
from stellargate.dialects.openai import OpenAIDialect
from stellargate.gctune import tune_gc
from stellargate.pipeline.context import Context
from stellargate.pipeline.limits import LimitStage
from stellargate.pipeline.routing import Router
from stellargate.settings import Settings
from stellargate.storage.records import KeyRecord
from stellargate.web import Reply, Request, Result

FIGURES = {"rps": 1e9, "concurrency": 1e9, "tpm": 1e12, "spend_per_day": 1e9}
SYSTEM = (
    "You are a concise, accurate assistant for an infrastructure team. Answer in plain English, prefer "
    "short paragraphs, cite configuration keys exactly, and say so when you are unsure instead of "
    "guessing. Never invent command-line flags. "
)


def body(i: int) -> bytes:
    """The harness's ~1 KB chat payload (load.py): a system prompt, two earlier turns, and a new
    question carrying a per-request counter."""
    msgs = [
        {"role": "system", "content": SYSTEM * 2},
        {"role": "user", "content": "We run several model servers behind one gateway. What does the "
         "gateway need to do for each request, in order?"},
        {"role": "assistant", "content": "Authenticate the key, apply rate limits and budgets, pick a "
         "deployment for the requested model, forward the request, stream the answer back and record "
         "usage for billing."},
        {"role": "user", "content": f"Request {i:08d}: explain in two sentences why keep-alive "
         "connections to the upstream matter for a proxy's latency."},
    ]  # fmt: skip
    return orjson.dumps({"model": "gpt-bench", "messages": msgs, "max_tokens": 256, "temperature": 0.7})


def settings() -> Settings:
    return Settings.model_validate(
        {
            "providers": {"bench": {"type": "openai", "base_url": "http://127.0.0.1:19090/v1"}},
            "models": [{"name": "gpt-bench", "provider": "bench", "price": {"input": 2.5, "output": 10}}],
            "limits": FIGURES,
        }
    )


async def run(limits: Limits, key: KeyRecord, n: int, concurrency: int) -> float:
    """CPU µs per request of the stage with a terminal that does nothing but report usage."""
    stage = LimitStage(limits)
    router = Router(settings())
    dialect = OpenAIDialect()
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}

    async def terminal(ctx: Context) -> Result:
        ctx.attempts = 1
        ctx.usage = Usage(prompt_tokens=12, completion_tokens=9)
        return Reply(200, b"{}")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    bodies = [body(i) for i in range(n)]
    tune_gc()  # as the gateway runs: what exists before the requests is frozen out of the collector

    async def one(i: int) -> Result:
        # Parsed just before the stage runs, as in the gateway, so that the request's objects are
        # as warm in the CPU's caches as they are there; the parsing costs both keys the same.
        req = Request(scope, receive)
        req.body = bodies[i]
        ctx = Context(http=req, endpoint="chat", dialect=dialect, key=key)
        ctx.request = dialect.parse_request(req.json(), req)
        ctx.target = router.resolve("gpt-bench")
        return await stage(ctx, terminal)

    t0 = time.process_time()
    for i in range(0, n, concurrency):  # as the harness loads the gateway: 32 requests in flight
        await asyncio.gather(*(one(j) for j in range(i, min(n, i + concurrency))))
    await asyncio.sleep(0)
    store = limits.store
    if isinstance(store, RedisCounterStore):
        for _ in range(10_000):  # the settlements still in flight (bounded wait)
            if not store._tasks and not store._batch and not store._sent:
                break
            await asyncio.sleep(0.001)
    return (time.process_time() - t0) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default=None)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("-c", type=int, default=32, help="requests in flight at once")
    a = ap.parse_args()
    s = settings()
    now = time.time()
    limited = KeyRecord(id="key_" + uuid.uuid4().hex[:24], name="b", key_hash="h", prefix="p",
                        created_at=now, updated_at=now)  # fmt: skip
    lifted = KeyRecord(id="key_" + uuid.uuid4().hex[:24], name="b", key_hash="h2", prefix="p",
                       created_at=now, updated_at=now,
                       limits={"rps": "unlimited", "concurrency": "unlimited", "tpm": "unlimited",
                               "spend_per_day": "unlimited"})  # fmt: skip
    backends: list[tuple[str, Any]] = [("memory", MemoryCounterStore)]
    if a.redis:
        backends.append(("redis", lambda: RedisCounterStore(a.redis)))
    for name, make in backends:
        store = make()
        limits = Limits(Policy(s), store, fail_open=True)
        base, full = [], []
        for _ in range(a.repeat):
            base.append(await run(limits, lifted, a.n, a.c))
            full.append(await run(limits, limited, a.n, a.c))
        await store.close()
        b, f = statistics.median(base), statistics.median(full)
        print(f"{name}: limits add {f - b:.1f} µs CPU per request (with limits {f:.1f}, lifted {b:.1f}; "
              f"runs: {', '.join(f'{x:.1f}' for x in full)})")  # fmt: skip


if __name__ == "__main__":
    try:
        import uvloop  # the loop the gateway runs on

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
