"""BreakerWatch on controlled breakers: one event per transition, named by the ejection, across
polls that miss a transition, a failed emit, a failed probe and a reload that replaces a deployment.
(The end-to-end tests, through the gateway and a signed delivery, are in tests/gateway.)"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

from stellargate.pipeline.deployments import Deployment
from stellargate.settings import BreakerSettings, RoutingSettings
from stellargate.webhook_events import BreakerWatch

POLICY = RoutingSettings(breaker=BreakerSettings(failures=1, cooldown=0.01))


class Hooks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.ids: set[str] = set()
        self.fail = False

    async def emit(self, event: str, data: dict[str, Any], *, dedupe: str | None = None) -> int:
        if self.fail:
            raise OSError("database down")
        key = f"{event}:{dedupe}"
        if key in self.ids:  # what the delivery table's unique message id does
            return 0
        self.ids.add(key)
        self.sent.append((event, data))
        return 1


def _watch(*deps: Deployment) -> tuple[BreakerWatch, Hooks, SimpleNamespace]:
    hooks = Hooks()
    rt = SimpleNamespace(models=SimpleNamespace(deployments={d.id: d for d in deps}))
    return BreakerWatch(cast(Any, rt), cast(Any, hooks)), hooks, rt


def _eject(d: Deployment) -> None:
    d.breaker.failure(time.monotonic())


def _recover(d: Deployment) -> None:
    time.sleep(0.02)
    assert d.available(time.monotonic())
    d.breaker.acquire()
    d.breaker.success(time.monotonic())


def _events(hooks: Hooks) -> list[str]:
    return [e.removeprefix("deployment.") for e, _ in hooks.sent]


async def test_each_transition_once() -> None:
    d = Deployment("p/m", "p", "m", POLICY)
    w, hooks, _ = _watch(d)
    await w.poll()
    assert hooks.sent == []
    _eject(d)
    await w.poll()
    await w.poll()
    time.sleep(0.02)
    d.available(time.monotonic())  # half-open: still ejected
    await w.poll()
    assert _events(hooks) == ["ejected"]
    (_, data) = hooks.sent[0]
    assert data["deployment"] == "p/m" and data["provider"] == "p" and data["upstream_model"] == "m"
    assert data["cooldown_s"] == 0.01 and data["ejections"] == 1
    d.breaker.acquire()
    d.breaker.failure(time.monotonic())  # the probe failed: the same ejection, no event
    await w.poll()
    assert _events(hooks) == ["ejected"]
    _recover(d)
    await w.poll()
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered"]
    assert hooks.sent[1][1]["reason"] == "probe_succeeded"
    assert hooks.sent[1][1]["ejected_at"] == hooks.sent[0][1]["ejected_at"]
    _eject(d)  # a second incident within the same minute is reported too
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered", "ejected"]


async def test_transitions_between_two_polls_are_reported_in_order() -> None:
    d = Deployment("p/m", "p", "m", POLICY)
    w, hooks, _ = _watch(d)
    _eject(d)
    _recover(d)
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered"]
    _eject(d)
    await w.poll()
    _recover(d)
    time.sleep(0.01)
    _eject(d)
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered", "ejected", "recovered", "ejected"]


async def test_a_failed_emit_is_tried_again() -> None:
    d = Deployment("p/m", "p", "m", POLICY)
    w, hooks, _ = _watch(d)
    _eject(d)
    hooks.fail = True
    try:
        await w.poll()
    except OSError:
        pass
    hooks.fail = False
    await w.poll()
    assert _events(hooks) == ["ejected"]


async def test_a_deployment_replaced_by_a_reload() -> None:
    old = Deployment("p/m", "p", "m", POLICY)
    w, hooks, rt = _watch(old)
    _eject(old)
    await w.poll()
    # A reload that changed the deployment: a new object under the same id, closed.
    new = Deployment("p/m", "p", "m", POLICY)
    rt.models.deployments = {"p/m": new}
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered"]
    assert hooks.sent[1][1]["reason"] == "config_changed"
    _eject(new)  # its own ejection is reported (the id-keyed watcher took it for the old one)
    await w.poll()
    assert _events(hooks) == ["ejected", "recovered", "ejected"]
    # A reload that kept it: the same object, no event.
    rt.models.deployments = {"p/m": new}
    await w.poll()
    assert len(hooks.sent) == 3
