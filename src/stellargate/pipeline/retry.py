"""Which failures may be retried or sent elsewhere, how long to wait, and the retry budget.

Error classes (``settings.FallbackClass``): ``5xx`` (the upstream failed), ``429`` (it throttled),
``timeout`` (a watchdog expired after the request was sent), ``connect`` (nothing was sent: refused,
unreachable, connect timeout) and ``context_window`` (the prompt does not fit the model). Anything
else is the client's own mistake (400-class) and is never retried or sent elsewhere.
"""

from __future__ import annotations

import random

from stellargate.errors import GatewayError, RateLimited, UpstreamTimeout
from stellargate.pipeline.breaker import Window
from stellargate.providers.errors_common import CONTEXT_OVERFLOW
from stellargate.settings import BackoffSettings, FallbackClass, RetryBudgetSettings

# The code adapters give a prompt that overflows the model's window (OpenAI's own code).
CONTEXT_OVERFLOW_CODES = frozenset({CONTEXT_OVERFLOW})
# Failures that say something about the deployment's health (429 is throttling, not ill health).
HEALTH_CLASSES = frozenset({"5xx", "timeout", "connect"})


def error_class(e: GatewayError) -> FallbackClass | None:
    if e.code in CONTEXT_OVERFLOW_CODES:
        return "context_window"
    if e.code in ("upstream_connect_failed", "upstream_timeout_connect"):
        return "connect"
    if isinstance(e, UpstreamTimeout):
        return "timeout"
    if isinstance(e, RateLimited) and e.upstream_status is not None:
        return "429"
    if e.http_status >= 500:
        return "5xx"
    return None


def backoff(retry: int, s: BackoffSettings) -> float:
    """Full jitter (uniform over [0, min(max, base * 2**retry)]): retries of many clients spread
    out instead of arriving together."""
    return random.uniform(0.0, min(s.max, s.base * 2**retry))


class RetryBudget:
    """Per deployment: retries within any 10 s stay under ``max(min, ratio * requests)``.

    Requests are the first attempts of client requests that went to this deployment; retries are
    every further attempt of those requests (same model or a fallback), so that during a full
    outage upstream traffic stays within (1 + ratio) times the client's.
    """

    __slots__ = ("_s", "window")

    def __init__(self, s: RetryBudgetSettings) -> None:
        self._s = s
        self.window = Window(10.0)  # a: requests, b: retries

    def configure(self, s: RetryBudgetSettings) -> None:
        self._s = s

    def deposit(self, now: float) -> None:
        self.window.add(now, a=1)

    def withdraw(self, now: float) -> bool:
        reqs, retries = self.window.totals(now)
        if retries >= max(self._s.min, self._s.ratio * reqs):
            return False
        self.window.add(now, b=1)
        return True
