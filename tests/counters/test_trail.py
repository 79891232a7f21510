"""The budget trail of both counter stores (memory, and the real Redis on this machine): every change
of a quota recorded with the state right after it, bounded, expiring with its counter, and absent
when off."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from stellargate.counters import CounterStore, Item, Trail, item, refund
from stellargate.counters.memory import MemoryCounterStore
from stellargate.counters.redis import RedisCounterStore

pytestmark = pytest.mark.asyncio(loop_scope="session")
REDIS_URL = "redis://127.0.0.1:6379/0"
MakeStore = Callable[[int], CounterStore]


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="session")
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    made: list[CounterStore] = []

    def make(trail: int) -> CounterStore:
        s: CounterStore
        if request.param == "memory":
            s = MemoryCounterStore(trail=trail)
        else:
            s = RedisCounterStore(REDIS_URL, trail=trail)
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


def name(what: str) -> str:
    return f"sg:test:{{{uuid.uuid4().hex}}}:{what}"  # unique per test: the server is shared


async def trail_of(store: CounterStore, key: str, entries: int) -> Trail:
    """The trail once it holds ``entries`` (Redis settles in the background, within milliseconds)."""
    for _ in range(200):
        t = await store.trail(key, 100_000)
        if t.kept >= entries:
            return t
        await asyncio.sleep(0.01)
    raise AssertionError(f"the trail of {key} holds {t.kept} entries, not {entries}")


async def test_each_change_is_recorded_with_the_state_after_it(make_store: MakeStore) -> None:
    store = make_store(100)
    key = name("spend")

    def budget(cost: int) -> Item:
        return item("q", key, 1000, 3600, cost)

    assert (await store.reserve([budget(300)], "a")).ok
    assert (await store.reserve([budget(300)], "b")).ok
    assert not (await store.reserve([budget(500)], "c")).ok  # a refusal changes nothing
    store.settle([budget(300)], "a", [120])
    refund(store, [budget(300)], "b")
    t = await trail_of(store, key, 4)
    got = [(e.op, e.token, e.committed_delta, e.reserved_delta, e.committed, e.reserved) for e in t.entries]
    assert got == [
        ("reserve", "a", 0, 300, 0, 300),
        ("reserve", "b", 0, 300, 0, 600),
        ("settle", "a", 120, -300, 120, 300),
        ("refund", "b", 0, -300, 120, 0),
    ]
    assert (t.kept, t.added) == (4, 4)
    assert all(a.ts <= b.ts for a, b in zip(t.entries, t.entries[1:], strict=False))
    last = await store.trail(key, 2)
    assert [e.op for e in last.entries] == ["settle", "refund"] and last.kept == 4  # the most recent


async def test_under_concurrency_every_recorded_state_is_within_the_limit(make_store: MakeStore) -> None:
    store = make_store(10_000)
    key = name("spend")
    limit = 10_000
    rng = random.Random(7)
    costs = {f"r{i}": rng.randint(50, 400) for i in range(300)}
    answers = await asyncio.gather(
        *(store.reserve([item("q", key, limit, 3600, c)], t) for t, c in costs.items())
    )
    admitted = [tok for tok, d in zip(costs, answers, strict=True) if d.ok]
    assert 0 < len(admitted) < len(costs)
    used = {tok: rng.randint(0, costs[tok]) for tok in admitted}
    for tok in admitted:
        store.settle([item("q", key, limit, 3600, costs[tok])], tok, [used[tok]])
    t = await trail_of(store, key, 2 * len(admitted))
    assert t.kept == t.added == 2 * len(admitted)  # nothing trimmed
    assert all(e.committed + e.reserved <= limit for e in t.entries)
    assert sorted(e.token for e in t.entries if e.op == "reserve") == sorted(admitted)
    closing = sorted(e.token for e in t.entries if e.op in ("settle", "refund"))
    assert closing == sorted(admitted)  # each admitted request settled exactly once
    assert t.entries[-1].committed == sum(used.values()) and t.entries[-1].reserved == 0
    state = (await store.read([item("q", key, limit, 3600, 0)]))[0]
    assert (state.used, state.reserved) == (t.entries[-1].committed, 0)


async def test_only_the_last_n_changes_are_kept_and_the_rest_is_counted(make_store: MakeStore) -> None:
    store = make_store(3)
    key = name("tokens")
    for i in range(5):
        assert (await store.reserve([item("q", key, 1000, 3600, 10)], f"t{i}")).ok
    t = await store.trail(key, 100)
    assert (t.kept, t.added) == (3, 5)
    assert [e.token for e in t.entries] == ["t2", "t3", "t4"]
    assert [e.reserved for e in t.entries] == [30, 40, 50]


async def test_off_records_nothing_and_rates_and_slots_never_have_a_trail(make_store: MakeStore) -> None:
    off, on = make_store(0), make_store(10)
    q, r, c = name("spend"), name("rpm"), name("conc")
    assert (await off.reserve([item("q", q, 100, 3600, 5)], "a")).ok
    off.settle([item("q", q, 100, 3600, 5)], "a", [5])
    items = [item("r", r, 10, 60, 1), item("c", c, 5, 30, 1)]
    assert (await on.reserve(items, "b")).ok
    on.settle(items, "b", [1, 1])
    await asyncio.sleep(0.05)
    for store, key in ((off, q), (on, r), (on, c)):
        assert await store.trail(key, 10) == Trail([], 0, 0)


async def test_large_figures_are_recorded_exactly(make_store: MakeStore) -> None:
    """Nano-USD of a large monthly budget pass 2**53 / 1000: no float formatting may round them."""
    store = make_store(10)
    key = name("spend")
    big = 123_456_789_012_345  # $123,456.78... in nano-USD
    assert (await store.reserve([item("q", key, 10**15, 3600, big)], "a")).ok
    store.settle([item("q", key, 10**15, 3600, big)], "a", [big - 1])
    t = await trail_of(store, key, 2)
    assert [(e.committed, e.reserved) for e in t.entries] == [(0, big), (big - 1, 0)]


async def test_on_redis_the_trail_expires_with_its_counter() -> None:
    key = name("spend")
    raw = aioredis.Redis.from_url(REDIS_URL)
    off, on = RedisCounterStore(REDIS_URL), RedisCounterStore(REDIS_URL, trail=10)
    try:
        spend = item("q", key, 1000, 3600, 10)
        assert (await off.reserve([spend], "a")).ok  # reserved while the trail was off...
        on.settle([spend], "a", [4])  # ...settled by a replica with it on: the stream starts here
        await trail_of(on, key, 1)
        counter_ttl = await raw.pttl(key)
        assert 0 < await raw.pttl(f"{key}:trail") <= counter_ttl
        assert (await on.reserve([spend], "b")).ok
        assert 3600_000 < await raw.pttl(f"{key}:trail") <= (3600 + 86400 + 1) * 1000
    finally:
        await raw.delete(key, f"{key}:trail")
        for s in (off, on):
            await s.close()
        await raw.aclose()


async def test_in_process_a_seeded_budget_starts_its_trail_with_the_seed() -> None:
    store = MemoryCounterStore(trail=10)
    store.seed("k", 500, 3600)
    assert (await store.reserve([item("q", "k", 1000, 3600, 100)], "a")).ok
    t = await store.trail("k", 10)
    assert [(e.op, e.committed, e.reserved) for e in t.entries] == [("seed", 500, 0), ("reserve", 500, 100)]


async def test_redis_scripts_declare_each_trail_stream_among_their_keys() -> None:
    """Redis requires a script to name every key it touches (Redis Cluster refuses one that does
    not): with the trail on, each counter's stream follows the counters in KEYS. Read from the
    real server's MONITOR feed."""
    spend, rate = name("spend"), name("rpm")
    raw = aioredis.Redis.from_url(REDIS_URL)
    store = RedisCounterStore(REDIS_URL, trail=10)
    try:
        async with raw.monitor() as feed:
            items = [item("r", rate, 10, 60, 1), item("q", spend, 1000, 3600, 10)]
            assert (await store.reserve(items, "a")).ok
            store.settle(items, "a", [1, 4])
            await trail_of(store, spend, 2)
            seen: list[list[str]] = []
            while len(seen) < 2:
                cmd = (await asyncio.wait_for(feed.next_command(), 5))["command"]
                words = cmd.split()
                if words[0] == "EVALSHA" and words[3] == rate:  # RESERVE, then SETTLE
                    seen.append(words)
        for words in seen:  # EVALSHA sha numkeys key... arg...
            assert words[2] == "4" and words[3:7] == [rate, spend, f"{rate}:trail", f"{spend}:trail"]
    finally:
        await store.close()
        await raw.aclose()
