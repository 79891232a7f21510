"""The counter stores, memory and Redis (the real server on this machine), through one suite:
exact admission under concurrency, settlement, refunds, and the GCRA's refill."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from stellargate.counters import CounterStore, item, refund
from stellargate.counters.memory import MemoryCounterStore
from stellargate.counters.redis import RedisCounterStore

pytestmark = pytest.mark.asyncio(loop_scope="session")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="session")
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    s: CounterStore = MemoryCounterStore() if request.param == "memory" else RedisCounterStore(REDIS_URL)
    yield s
    await s.close()


def name(what: str) -> str:
    return f"sg:test:{{{uuid.uuid4().hex}}}:{what}"  # unique per test: the server is shared


async def test_a_burst_of_ten_times_the_limit_admits_exactly_the_limit(store: CounterStore) -> None:
    rate = item("r", name("rpd"), 100, 86400, 1)
    results = await asyncio.gather(*(store.reserve([rate], f"t{i}") for i in range(1000)))
    assert sum(d.ok for d in results) == 100
    refused = [d for d in results if not d.ok]
    assert all(d.failed == 0 and d.retry_after > 0 for d in refused)


async def test_all_limits_are_checked_before_any_is_reserved(store: CounterStore) -> None:
    rate, slots = item("r", name("rpm"), 10, 60, 1), item("c", name("conc"), 2, 30, 1)
    assert (await store.reserve([rate, slots], "a")).ok
    assert (await store.reserve([rate, slots], "b")).ok
    d = await store.reserve([rate, slots], "c")
    assert not d.ok and d.failed == 1
    # The refused request took nothing from the rate limit: 8 of 10 are left after two.
    assert (await store.read([rate]))[0].remaining == pytest.approx(8, abs=0.01)


async def test_a_refusal_by_the_last_limit_leaves_every_other_counter_as_it_was(
    store: CounterStore,
) -> None:
    rate, tokens = item("r", name("rpm"), 10, 60, 1), item("r", name("tpm"), 1000, 60, 300)
    slots, budget = item("c", name("conc"), 5, 30, 1), item("q", name("usd"), 1000, 3600, 200)
    gate = item("c", name("gate"), 1, 30, 1)
    assert (await store.reserve([gate], "holder")).ok  # the last limit is full
    items = [rate, tokens, slots, budget]
    assert (await store.reserve(items, "a")).ok
    before = await store.read(items)
    for i in range(3):
        d = await store.reserve([*items, gate], f"r{i}")
        assert not d.ok and d.failed == 4
    after = await store.read(items)
    for b, a in zip(before, after, strict=True):
        # (rates refill while the test runs: a few hundredths; a request taken would be 1 or more)
        assert (a.used, a.reserved) == pytest.approx((b.used, b.reserved), abs=0.5)


async def test_a_concurrency_slot_comes_back_when_settled(store: CounterStore) -> None:
    slots = item("c", name("conc"), 1, 30, 1)
    assert (await store.reserve([slots], "a")).ok
    assert not (await store.reserve([slots], "b")).ok
    store.settle([slots], "a", [1])
    await asyncio.sleep(0.05)  # Redis settles in the background
    assert (await store.reserve([slots], "c")).ok


async def test_a_quota_holds_reservations_and_settles_to_the_real_use(store: CounterStore) -> None:
    budget = lambda cost: item("q", budget_key, 1000, 3600, cost)  # noqa: E731
    budget_key = name("spend")
    assert (await store.reserve([budget(300)], "a")).ok
    assert (await store.reserve([budget(300)], "b")).ok
    assert (await store.reserve([budget(300)], "c")).ok
    assert not (await store.reserve([budget(300)], "d")).ok  # 900 held, 300 more would pass 1000
    store.settle([budget(300)], "a", [100])
    await asyncio.sleep(0.05)
    state = (await store.read([budget(0)]))[0]
    assert (state.used, state.reserved) == (100, 600)
    assert (await store.reserve([budget(300)], "d")).ok  # 100 + 600 + 300 = 1000
    assert not (await store.reserve([budget(0)], "e")).ok  # used up: even a free request waits


async def test_gcra_refills_smoothly_without_a_second_burst(store: CounterStore) -> None:
    rate = item("r", name("rps"), 10, 1, 1)
    results = [await store.reserve([rate], str(i)) for i in range(11)]
    assert [d.ok for d in results] == [True] * 10 + [False]
    assert 0 < results[-1].retry_after <= 0.11
    await asyncio.sleep(0.25)  # about 2.5 requests' worth comes back, not a new bucket of 10
    more = [await store.reserve([rate], f"m{i}") for i in range(5)]
    assert 2 <= sum(d.ok for d in more) <= 3


async def test_a_token_rate_refunds_what_the_answer_did_not_use(store: CounterStore) -> None:
    tpm = lambda cost: item("r", tpm_key, 1000, 60, cost)  # noqa: E731
    tpm_key = name("tpm")
    assert (await store.reserve([tpm(800)], "a")).ok
    assert not (await store.reserve([tpm(300)], "b")).ok
    store.settle([tpm(800)], "a", [100])
    await asyncio.sleep(0.05)
    assert (await store.reserve([tpm(300)], "b")).ok


async def test_a_request_larger_than_the_whole_limit_is_refused(store: CounterStore) -> None:
    d = await store.reserve([item("r", name("tpm"), 1000, 60, 5000)], "a")
    assert not d.ok and d.retry_after == 60


async def test_a_refund_gives_everything_back(store: CounterStore) -> None:
    items = [item("r", name("rpm"), 1, 60, 1), item("q", name("spend"), 10, 3600, 10)]
    assert (await store.reserve(items, "a")).ok
    assert not (await store.reserve(items, "b")).ok
    refund(store, items, "a")
    await asyncio.sleep(0.05)
    assert (await store.reserve(items, "b")).ok


async def test_a_reservation_cancelled_in_flight_is_given_back() -> None:
    """The client left while the script ran on Redis: what it reserved comes back by itself."""
    store = RedisCounterStore(REDIS_URL)
    try:
        slots = item("c", name("conc"), 1, 30, 1)
        assert (await store.reserve([item("r", name("warm"), 10, 1, 1)], "w")).ok  # connected
        task = asyncio.ensure_future(store.reserve([slots], "a"))
        for _ in range(2):
            await asyncio.sleep(0)  # the command is written, its answer not yet read
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            await asyncio.sleep(0.01)
            if (await store.read([slots]))[0].reserved == 0:
                break
        assert (await store.reserve([slots], "b")).ok
    finally:
        await store.close()
