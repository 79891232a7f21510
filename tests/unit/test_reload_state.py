"""What a config reload keeps: the state of unchanged deployments; and the breaker parts it relies
on (the ejection's start, new settings on a live breaker, a half-open probe that proves nothing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellargate.errors import InvalidRequest, RateLimited
from stellargate.pipeline.breaker import Breaker
from stellargate.pipeline.deployments import Attempt, Deployment
from stellargate.pipeline.routing import Router
from stellargate.reload import swap_router
from stellargate.settings import BreakerSettings, RoutingSettings, Settings, load_settings


def _settings(tmp_path: Path, cfg: dict[str, Any]) -> Settings:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return load_settings(p, env={})


def _cfg(a_url: str = "http://127.0.0.1:9/v1", a_type: str = "openai", **routing: Any) -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": a_type, "base_url": a_url, "api_key": "sk-a"},
            "b": {"type": "openai", "base_url": "http://127.0.0.1:10/v1"},
        },
        "models": [
            {
                "name": "m",
                "deployments": [{"provider": "a", "model": "up"}, {"provider": "b", "model": "up"}],
            },
            {"name": "n", "provider": "a", "model": "other"},
        ],
        "routing": {"breaker": {"failures": 1, "cooldown": 30}, **routing},
    }


def _eject(d: Deployment) -> None:
    d.breaker.failure(time.monotonic())
    assert d.breaker.state == "open"


def test_unchanged_deployments_keep_their_state(tmp_path: Path) -> None:
    live = Router(_settings(tmp_path, _cfg()))
    a_up, b_up = (m.deployment for m in live.group("m").members)
    adhoc = live.group("a/adhoc").members[0].deployment
    _eject(a_up)
    a_up.observe_latency(120.0)
    _eject(adhoc)
    # An unrelated change: another key and header for "a", a new model, other breaker figures.
    cfg = _cfg(breaker={"failures": 3, "cooldown": 5})
    cfg["providers"]["a"].update(api_key="sk-new", headers={"x-team": "1"})
    cfg["models"].append({"name": "added", "provider": "b", "model": "new"})
    swap_router(live, Router(_settings(tmp_path, cfg), previous=live))

    kept = live.group("m").members[0].deployment
    assert kept is a_up and kept.breaker.state == "open" and kept.ewma_ms == 120.0
    assert not kept.available(time.monotonic())  # still ejected: the cooldown runs out as decided
    assert kept.breaker.cooldown == 30
    assert kept.breaker._s.failures == 3  # the new figures apply from its next decision
    assert live.group("m").members[1].deployment is b_up
    assert live.group("a/adhoc").members[0].deployment is adhoc  # taken over on first use
    assert live.group("added").members[0].deployment.breaker.state == "closed"


@pytest.mark.parametrize("change", ["base_url", "type"])
def test_a_deployment_whose_place_changed_starts_afresh(tmp_path: Path, change: str) -> None:
    live = Router(_settings(tmp_path, _cfg()))
    a_up, b_up = (m.deployment for m in live.group("m").members)
    other = live.group("n").members[0].deployment
    for d in (a_up, b_up, other):
        _eject(d)
    cfg = _cfg("http://127.0.0.1:11/v1") if change == "base_url" else _cfg(a_type="anthropic")
    swap_router(live, Router(_settings(tmp_path, cfg), previous=live))
    fresh = live.group("m").members[0].deployment
    assert fresh is not a_up and fresh.breaker.state == "closed" and fresh.ewma_ms is None
    assert live.group("n").members[0].deployment is not other  # same provider, so same change
    assert live.group("m").members[1].deployment is b_up and b_up.breaker.state == "open"


def test_a_renamed_upstream_model_is_a_new_deployment(tmp_path: Path) -> None:
    live = Router(_settings(tmp_path, _cfg()))
    _eject(live.group("n").members[0].deployment)
    cfg = _cfg()
    cfg["models"][1]["model"] = "renamed"
    swap_router(live, Router(_settings(tmp_path, cfg), previous=live))
    assert live.group("n").members[0].deployment.id == "a/renamed"
    assert live.group("n").members[0].deployment.breaker.state == "closed"
    assert "a/other" not in live.deployments


def test_the_sharing_hook_reaches_kept_and_new_deployments(tmp_path: Path) -> None:
    live = Router(_settings(tmp_path, _cfg()))
    heard: list[str] = []
    live.on_breaker_change = lambda b: heard.append(b.name)
    for d in live.deployments.values():
        d.breaker.on_change = live.on_breaker_change
    cfg = _cfg()
    cfg["models"].append({"name": "added", "provider": "b", "model": "new"})
    swap_router(live, Router(_settings(tmp_path, cfg), previous=live))
    _eject(live.group("m").members[0].deployment)
    _eject(live.group("added").members[0].deployment)
    _eject(live.group("b/adhoc").members[0].deployment)
    assert heard == ["a/up", "b/new", "b/adhoc"]


def test_ejected_at_names_the_incident() -> None:
    b = Breaker(BreakerSettings(failures=1, cooldown=1))
    assert b.ejected_at == 0.0
    before = time.time()
    b.failure(0.0)
    first = b.ejected_at
    assert before <= first <= time.time()
    assert b.available(1.0)  # half-open
    b.acquire()
    b.failure(1.0)  # the probe failed: a longer ejection, the same incident
    assert b.state == "open" and b.ejected_at == first
    b.available(10.0)
    b.acquire()
    b.success(10.0)
    b.failure(10.5)
    assert b.ejected_at > first  # a new incident

    other = Breaker(BreakerSettings())
    other.remote_open(5.0, 1, 1.0, since=first)
    assert other.ejected_at == first
    other.remote_open(9.0, 2, 2.0, since=first + 1)  # the same incident, lengthened
    assert other.ejected_at == first


def test_configure_keeps_state_and_renews_a_resized_window() -> None:
    b = Breaker(BreakerSettings(window=30))
    b.failure(1.0)
    b.configure(BreakerSettings(window=30, failures=9))
    assert b.consecutive == 1 and b.window.totals(1.0) == (1, 1)
    b.configure(BreakerSettings(window=10))
    assert b.consecutive == 1 and b.window.totals(1.0) == (0, 0)


@pytest.mark.parametrize(
    "err",
    [RateLimited("slow down", upstream_status=429, retry_after=0.1), InvalidRequest("bad request")],
)
def test_a_half_open_probe_that_proves_nothing_frees_its_slot(err: Any) -> None:
    d = Deployment("p/m", "p", "m", RoutingSettings(breaker=BreakerSettings(failures=1, cooldown=0.01)))
    d.breaker.failure(time.monotonic())
    time.sleep(0.02)
    assert d.available(time.monotonic()) and d.breaker.state == "half_open"
    a = Attempt(d, {})
    assert not d.available(time.monotonic())  # the probe holds the slot
    a.fail(err)
    a.release()
    assert d.available(time.monotonic())  # another request may probe; it was stuck before
    Attempt(d, {}).ok()
    assert d.breaker.state == "closed"


def test_a_deployment_kept_twice_over_is_still_reported_kept(tmp_path: Path) -> None:
    live = Router(_settings(tmp_path, _cfg()))
    adhoc = live.group("b/adhoc").members[0].deployment
    swap_router(live, Router(_settings(tmp_path, _cfg()), previous=live))  # not named: held back
    cfg = _cfg()
    cfg["models"].append({"name": "named", "provider": "b", "model": "adhoc"})
    new = Router(_settings(tmp_path, cfg), previous=live)
    assert new.group("named").members[0].deployment is adhoc
    assert new.taken_over == {"a/up", "b/up", "a/other", "b/adhoc"}
