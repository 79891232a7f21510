"""Counters behind limits and budgets: reserve before the upstream call, settle after it.

A ``CounterStore`` checks and reserves every limit of one request in one atomic step (one lock-free
step of the event loop in memory, one Lua script on Redis), so no interleaving of concurrent
requests can admit one that the limits refuse. Three kinds of counter:

- ``r`` rate, a GCRA (generic cell rate algorithm): one "theoretical arrival time" per limit. A
  limit of N per period P lets an idle key send N at once, then exactly N/P per second.
- ``c`` concurrency: requests in flight, each holding a slot until it settles (on Redis a sorted
  set scored by a deadline, so that a replica that dies cannot hold slots for ever).
- ``q`` quota: a calendar period's committed use plus what open reservations hold, refused when
  committed + reserved + this request's worst case would pass the limit.

A quota counter may keep a trail (``budget_trail``): its most recent changes, each recorded in the
same atomic step as the change itself, so the trail is the exact sequence of states the counter
went through (what an operator reads to explain a budget, and what the tests check the budget
against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

Kind = Literal["r", "c", "q"]
EPS = 1e-9


# One limit of one request: (kind, key, limit, period, cost). ``key``: the counter's name in the
# store; ``period``: a rate's window in seconds, for a concurrency slot the seconds before a lost
# one expires, for a quota the seconds left in its calendar period; ``cost``: what it reserves,
# in requests, tokens or nano-USD.
#
# A plain tuple, not a named one or a dataclass: several are built, unpacked and read for every
# request, and only an exact tuple unpacks on CPython's fast path.
Item = tuple[Kind, str, float, float, float]


def item(kind: Kind, key: str, limit: float, period: float, cost: float) -> Item:
    return (kind, key, limit, period, cost)


class Decision(NamedTuple):
    ok: bool
    failed: int  # index of the first item that refused, -1 when all admitted
    retry_after: float
    remaining: list[float]  # per item, after this reservation
    reset: list[float]  # per item, seconds until it is whole again


@dataclass(frozen=True, slots=True)
class Usage:
    """What a counter holds now: ``used`` (rates: consumed of the window; quotas: committed),
    ``reserved`` (quotas and concurrency: held by requests in flight), ``remaining``, ``reset``."""

    used: float
    reserved: float
    remaining: float
    reset: float


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One change of a quota counter, in its units (tokens or nano-USD)."""

    ts: float  # the store's clock: Redis's TIME, or this process's wall clock
    op: str  # reserve, settle, refund (settled with nothing committed), seed (in process, at start)
    token: str  # the request id that made the change
    committed_delta: float
    reserved_delta: float
    committed: float  # after the change
    reserved: float


@dataclass(frozen=True, slots=True)
class Trail:
    entries: list[TrailEntry]  # the most recent ones asked for, oldest first
    kept: int  # entries the store holds for the counter
    # Entries ever recorded in its period: more than ``kept`` means older ones were trimmed.
    # None: the store cannot tell (Redis before 7.0).
    added: int | None


class CounterUnavailable(Exception):
    """The shared counter store cannot be reached (Redis down)."""


class CounterStore(Protocol):
    async def reserve(self, items: Sequence[Item], token: str) -> Decision:
        """Check every item and, only when all admit, reserve them all at once."""
        ...

    def settle(self, items: Sequence[Item], token: str, actual: Sequence[float]) -> None:
        """Replace each reservation by the real use (``actual`` per item) and release the rest.
        Never blocks the caller: a remote store settles in the background and retries."""
        ...

    async def read(self, items: Sequence[Item]) -> list[Usage]:
        """The current state of items, without changing it (for the admin API)."""
        ...

    async def trail(self, key: str, count: int) -> Trail:
        """The last ``count`` recorded changes of the quota counter ``key`` (empty when the
        trail is off)."""
        ...

    async def close(self) -> None: ...


def refund(store: CounterStore, items: Sequence[Item], token: str) -> None:
    """Release a reservation that never reached the upstream: nothing was used."""
    store.settle(items, token, [0.0] * len(items))
