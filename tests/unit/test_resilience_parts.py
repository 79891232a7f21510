"""The resilience parts in isolation, on a controlled clock: breaker, retry budget, strategies,
error classes, backoff, and the routing settings."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellargate.errors import (
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from stellargate.pipeline.breaker import Breaker, Window
from stellargate.pipeline.deployments import Attempt, Deployment, Member, ModelGroup
from stellargate.pipeline.retry import RetryBudget, backoff, error_class
from stellargate.pipeline.routing import Router
from stellargate.settings import (
    BackoffSettings,
    BreakerSettings,
    ConfigError,
    RetryBudgetSettings,
    RoutingSettings,
    load_settings,
)


def test_breaker_ejects_probes_once_and_doubles_its_cooldown() -> None:
    b = Breaker(BreakerSettings(failures=3, cooldown=10, max_cooldown=25))
    changes: list[str] = []
    b.on_change = lambda br: changes.append(br.state)
    for _ in range(3):
        assert b.available(0.0)
        b.acquire()
        b.failure(0.0)
    assert b.state == "open" and not b.available(9.99)
    assert b.available(10.0)  # half-open: one probe
    b.acquire()
    assert not b.available(10.0)
    b.failure(10.5)  # the probe failed: twice as long
    assert b.state == "open" and b.open_until == 30.5
    assert b.available(30.5)
    b.acquire()
    b.abandon()  # the probe's client left: another request may probe
    assert b.available(30.6)
    b.acquire()
    b.failure(31.0)
    assert b.cooldown == 25  # capped
    assert b.available(56.0)
    b.acquire()
    b.success(56.1)
    assert b.state == "closed" and b.ejections == 0 and b.available(56.2)
    assert changes == ["open", "open", "open", "closed"]


def test_breaker_ejects_on_failure_rate() -> None:
    b = Breaker(BreakerSettings(failures=100, error_rate=0.5, window=10, min_requests=10))
    for i in range(9):
        (b.failure if i % 2 else b.success)(float(i) / 10)
    assert b.state == "closed"  # 4 of 9, and fewer than min_requests
    b.failure(1.0)
    assert b.state == "open"  # 5 of 10


def test_window_forgets_old_buckets() -> None:
    w = Window(10.0)
    w.add(0.5, a=3)
    w.add(5.0, a=1, b=1)
    assert w.totals(9.0) == (4, 1)
    assert w.totals(11.0) == (1, 1)
    assert w.totals(30.0) == (0, 0)


def test_retry_budget_is_a_ratio_with_a_floor() -> None:
    bud = RetryBudget(RetryBudgetSettings(ratio=0.2, min=3))
    assert [bud.withdraw(0.0) for _ in range(4)] == [True, True, True, False]
    for _ in range(100):
        bud.deposit(0.1)
    allowed = sum(bud.withdraw(0.2) for _ in range(100))
    assert allowed == 20 - 3  # 20% of 100, three already spent
    assert bud.withdraw(20.0)  # a new window


def test_error_classes() -> None:
    assert error_class(UpstreamError("x", upstream_status=500)) == "5xx"
    assert error_class(UpstreamUnavailable("x", code="upstream_connect_failed")) == "connect"
    assert error_class(UpstreamTimeout("x", code="upstream_timeout_connect")) == "connect"
    assert error_class(UpstreamTimeout("x", code="upstream_timeout_idle")) == "timeout"
    assert error_class(RateLimited("x", upstream_status=429)) == "429"
    assert error_class(RateLimited("x")) is None  # the gateway's own limit: not an upstream's
    assert error_class(InvalidRequest("x", code="context_length_exceeded")) == "context_window"
    assert error_class(InvalidRequest("x")) is None


def test_backoff_is_full_jitter_capped() -> None:
    s = BackoffSettings(base=0.5, max=3)
    random.seed(7)
    waits = [backoff(r, s) for r in range(8) for _ in range(50)]
    assert min(waits) >= 0 and max(waits) <= 3
    assert max(backoff(0, s) for _ in range(200)) <= 0.5


def _group(strategy: str, n: int = 3, weights: tuple[float, ...] = (1, 1, 1)) -> ModelGroup:
    pol = RoutingSettings()
    members = [
        Member(Deployment(f"p{i}/m", f"p{i}", "m", pol), target=None, weight=weights[i])  # type: ignore[arg-type]
        for i in range(n)
    ]
    return ModelGroup("g", members, pol, strategy=strategy)


def test_strategies() -> None:
    random.seed(1)
    g = _group("weighted", weights=(6, 3, 1))
    counts = Counter(g.pick(0.0).deployment.id for _ in range(10000))  # type: ignore[union-attr]
    assert abs(counts["p0/m"] / 10000 - 0.6) < 0.03 and abs(counts["p2/m"] / 10000 - 0.1) < 0.02
    g = _group("priority")
    assert g.pick(0.0).deployment.id == "p0/m"  # type: ignore[union-attr]
    assert g.pick(0.0, ["p0/m"]).deployment.id == "p1/m"  # type: ignore[union-attr]
    g = _group("least_inflight")
    g.members[0].deployment.inflight, g.members[1].deployment.inflight = 4, 1
    g.members[2].deployment.inflight = 2
    assert g.pick(0.0).deployment.id == "p1/m"  # type: ignore[union-attr]
    g = _group("latency")
    for m, ms in zip(g.members, (50.0, 20.0, 90.0), strict=True):
        m.deployment.observe_latency(ms)
    counts = Counter(g.pick(0.0).deployment.id for _ in range(1000))  # type: ignore[union-attr]
    assert counts["p1/m"] > 900  # the rest is exploration
    g.members[1].deployment.breaker.eject(0.0)
    assert all(g.pick(1.0).deployment.id != "p1/m" for _ in range(100))  # type: ignore[union-attr]


def test_throttled_deployment_is_avoided_while_another_is_left() -> None:
    g = _group("priority", n=2)
    g.members[0].deployment.throttled_until = 5.0
    assert g.pick(1.0).deployment.id == "p1/m"  # type: ignore[union-attr]
    g.members[1].deployment.breaker.eject(0.0)
    assert g.pick(1.0).deployment.id == "p0/m"  # type: ignore[union-attr]


def _load(tmp_path: Path, cfg: dict[str, Any]) -> Any:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return load_settings(p, env={})


def test_settings_groups_fallbacks_and_model_timeouts(tmp_path: Path) -> None:
    prov = {"type": "openai", "base_url": "http://127.0.0.1:9", "timeouts": {"idle": 30, "first_byte": 60}}
    s = _load(
        tmp_path,
        {
            "providers": {"a": prov, "b": prov},
            "models": [
                {
                    "name": "g",
                    "model": "up",
                    "strategy": "least_inflight",
                    "deployments": [{"provider": "a", "weight": 2}, {"provider": "b", "model": "other"}],
                    "fallbacks": ["f", "b/x"],
                    "timeouts": {"idle": 5},
                },
                {"name": "f", "provider": "a", "model": "up"},
            ],
        },
    )
    r = Router(s)
    g = r.group("g")
    assert [m.deployment.id for m in g.members] == ["a/up", "b/other"]
    assert r.group("f").members[0].deployment is g.members[0].deployment  # shared by id
    assert [f.name for f in g.fallbacks] == ["f", "b/x"]
    t = g.members[0].target.timeouts
    assert (t.idle, t.first_byte) == (5, 60)
    assert r.group("f").members[0].target.timeouts.idle == 30


def test_settings_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(
            tmp_path,
            {
                "providers": {"a": {"type": "openai"}},
                "models": [
                    {"name": "x"},
                    {"name": "y", "provider": "a", "fallbacks": ["nope"]},
                    {"name": "z", "deployments": [{"provider": "zz"}]},
                ],
            },
        )
    paths = {p.path for p in e.value.problems}
    assert {"models[0].provider", "models[1].fallbacks[0]", "models[2].deployments[0].provider"} <= paths


def test_rpm_and_tpm_allowances_take_a_deployment_out_of_rotation() -> None:
    pol = RoutingSettings()
    d = Deployment("p/m", "p", "m", pol, rpm=2, tpm=1000)
    for _ in range(2):
        a = Attempt(d, {})
        a.ok()
        a.release(10)
    assert not d.available(time.monotonic())  # two requests this minute
    d2 = Deployment("q/m", "q", "m", pol, tpm=100)
    a = Attempt(d2, {})
    a.ok()
    a.release(150)
    assert not d2.available(time.monotonic())
    assert d2.inflight == 0 and d2.view(time.monotonic())["tpm"] == {"limit": 100, "used": 150}


def test_a_group_without_provider_takes_its_first_deployments(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        {
            "providers": {"a": {"type": "openai", "base_url": "http://127.0.0.1:9"}},
            "models": [{"name": "g", "deployments": [{"provider": "a", "model": "x"}]}],
        },
    )
    assert s.models[0].provider == "a"
