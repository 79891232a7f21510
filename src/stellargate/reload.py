"""Config reload: ``SIGHUP`` or ``POST /admin/v1/reload`` applies provider, model and routing
changes without a restart and without dropping a request.

How a request in flight is kept whole: it resolved its ``Target`` (provider settings, adapter,
base URL, upstream model, price) before the swap and holds those objects until it ends; the swap
replaces the router's tables in one synchronous step (no ``await`` in between), so any request
sees either the old configuration or the new one, never a mix. Upstream connection pools are keyed
by provider and origin, so a changed base URL gets a new pool while old connections finish.

What is kept: a deployment that stays the same upstream place (same id, i.e. provider name and
upstream model, and a provider of the same type at the same base URL) keeps its live state: breaker
(an ejection runs out its cooldown), latency EWMA, throttling, retry budget and counters, and its
in-flight requests are counted on the same object. A changed or new deployment starts afresh. See
``Router._unchanged``.

What is applied: ``providers``, ``models`` and ``routing``. Other settings (server, database,
Redis, limits, ...) need a restart; the answer lists those that changed. An invalid file changes
nothing: the answer is a 400 listing every problem, as ``check-config`` would.

Reaching every process: the worker that takes the admin call reloads at once and bumps a counter
in ``data_dir/config.generation`` that the other workers of the machine check every second; with
Redis, a message on ``stellargate:config:reload`` tells the other replicas, each of which reloads
its own config file. ``SIGHUP`` to a worker reloads that worker; to the supervisor of a
multi-worker server, uvicorn replaces the workers one by one, each old one finishing its requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import suppress
from typing import Any

from stellargate.errors import InvalidRequest
from stellargate.invalidation import subscribe
from stellargate.pipeline.keycache import SharedGeneration
from stellargate.pipeline.routing import Router
from stellargate.runtime import Runtime
from stellargate.settings import ConfigError, Settings, load_settings

log = logging.getLogger("stellargate.reload")

CHANNEL = "stellargate:config:reload"
APPLIED = ("providers", "models", "routing")
_IGNORED = frozenset({*APPLIED, "source", "unset_variables"})


def swap_router(old: Router, new: Router) -> None:
    """Give ``old`` (the object every stage holds) the tables of ``new``, in one step."""
    hook = old.on_breaker_change  # shared ejections (breaker_sync) keep reaching the new deployments
    new.on_breaker_change = hook
    for d in new.deployments.values():
        d.breaker.on_change = hook
    vars(old).update(vars(new))


class Reloader:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._lock = asyncio.Lock()
        self._gen = SharedGeneration(rt.settings.data_dir / "config.generation")
        self._seen = self._gen.read()
        self.reloads = 0

    async def reload(self, actor: str, source: str | None = None) -> dict[str, Any]:
        """Re-read the config file and apply it; InvalidRequest (nothing changed) when it is invalid."""
        async with self._lock:
            old = self.rt.settings
            path = None if old.source == "<defaults>" else old.source
            try:
                new: Settings = await asyncio.to_thread(load_settings, path)
            except ConfigError as e:
                await self.rt.audit.record(
                    "config.reload_failed", actor=actor, source=source, details={"problems": len(e.problems)}
                )
                raise InvalidRequest(
                    "The configuration has problems; nothing was changed: " + "; ".join(map(str, e.problems)),
                    code="invalid_config",
                ) from None
            changed = sorted(k for k in APPLIED if getattr(new, k) != getattr(old, k))
            if not changed and actor.startswith("system:"):
                # Told twice (the shared counter and Redis), or nothing changed: keep the live state.
                return {"object": "config_reload", "applied": [], "restart_required": []}
            live = self.rt.models
            router = Router(new, previous=live)  # built before the swap: a failure leaves the old one
            kept = sorted(router.taken_over)
            fresh = sorted(i for i in router.deployments if i not in router.taken_over)
            swap_router(live, router)
            self.rt.settings = old.model_copy(update={k: getattr(new, k) for k in APPLIED})
            self.reloads += 1
            restart = sorted(
                k for k in type(new).model_fields if k not in _IGNORED and getattr(new, k) != getattr(old, k)
            )
            details = {
                "applied": changed,
                "restart_required": restart,
                "deployments": {"kept": kept, "fresh": fresh},
                "pid": os.getpid(),
            }
            await self.rt.audit.record("config.reloaded", actor=actor, source=source, details=details)
            log.info(
                "configuration reloaded (%s): applied %s; restart needed for %s", actor, changed, restart
            )
            return {
                "object": "config_reload",
                "applied": changed,
                "restart_required": restart,
                "providers": list(new.providers),
                "models": [m.name for m in new.models],
                "deployments": {"kept": kept, "fresh": fresh},
            }

    async def tell_others(self) -> None:
        """Make the other workers of this machine and the other replicas reload too."""
        self._gen.bump()
        self._seen = self._gen.read()
        if self.rt.redis is not None:
            try:
                await self.rt.redis.publish(CHANNEL, str(os.getpid()).encode())
            except Exception as e:
                log.warning("could not publish a config reload: %s", type(e).__name__)

    def _background(self, actor: str) -> None:
        async def run() -> None:
            try:
                await self.reload(actor)
            except InvalidRequest as e:
                log.error("configuration reload refused: %s", e.message)
            except Exception:
                log.exception("configuration reload failed")

        task = asyncio.create_task(run())
        self.rt.tasks.append(task)
        task.add_done_callback(lambda t: self.rt.tasks.remove(t) if t in self.rt.tasks else None)

    async def watch(self, interval: float = 1.0) -> None:
        """Reload when another worker bumped the shared counter (one mmap read a second)."""
        while True:
            await asyncio.sleep(interval)
            g = self._gen.read()
            if g != self._seen:
                self._seen = g
                self._background("system:worker")

    def start(self) -> None:
        rt = self.rt
        rt.tasks.append(asyncio.create_task(self.watch()))
        if rt.redis is not None:
            first = True

            def on_message() -> None:
                nonlocal first
                if first:  # subscribe() calls once on (re)connecting: not a reload request
                    first = False
                    return
                self._background("system:replica")

            rt.tasks.append(asyncio.create_task(subscribe(rt.redis, CHANNEL, on_message)))
        with suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._background, "signal:SIGHUP")

    def close(self) -> None:
        with suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        self._gen.close()
