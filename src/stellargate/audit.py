"""The audit appender: administrative actions written at once, security events buffered.

Two kinds of events, two paths:
- Administrative actions (key created, updated, rotated, revoked; limits changed; config reloaded)
  are rare and are written before the action's answer is sent (``await record(...)``): an admin
  who was told "done" can find the entry. If the database refuses it, the event is buffered like
  the others rather than failing an action that already happened.
- Security events on the hot path (authentication failures, budget exhaustion, fail-open) are
  appended to memory (``add``: O(1), no I/O) and written in batches every
  ``audit.flush_interval``. A flood of bad keys cannot grow memory without bound: past
  ``audit.max_buffer`` events are dropped and counted (``dropped_total``, logged), and the counts
  say how many. A graceful shutdown flushes the buffer.

Entries are never updated or deleted by the gateway; the API only reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Any, Protocol

from stellargate.core.usage import UsageRecord
from stellargate.storage.records import AuditEvent, AuditStore
from stellargate.web import Request

log = logging.getLogger("stellargate.audit")


def new_event_id(ts: float) -> str:
    """Sortable by time (microseconds in hex), unique by 48 random bits."""
    return f"aud_{int(ts * 1_000_000):014x}{os.urandom(6).hex()}"


def key_prefix(token: str | None) -> str:
    """What may be logged of a presented credential: a gateway key's display prefix, else nothing.

    Only ``sg-`` + 8 characters (of 40 random ones) are kept, as the key table stores them. Other
    tokens (someone's provider key pasted by mistake, the admin key) are never written down.
    """
    if token and token.startswith("sg-") and len(token) > 11:
        return token[:11]
    return "(none)" if not token else "(not a gateway key)"


class AuditLog:
    def __init__(self, store: AuditStore, *, flush_interval: float = 0.5, max_buffer: int = 10_000) -> None:
        self._store = store
        self._interval = flush_interval
        self._max = max_buffer
        self._buf: deque[AuditEvent] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped_total = 0  # events refused because the buffer was full
        self.written_total = 0

    @property
    def depth(self) -> int:
        return len(self._buf)

    def add(
        self,
        action: str,
        *,
        actor: str,
        target: str | None = None,
        source: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Buffer an event (the hot path: no I/O, no await)."""
        if len(self._buf) >= self._max or self._closed:
            self.dropped_total += 1
            return
        ts = time.time()
        self._buf.append(AuditEvent(new_event_id(ts), ts, actor, action, target, source, details or {}))

    async def record(
        self,
        action: str,
        *,
        actor: str,
        target: str | None = None,
        source: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Write an event now (administrative actions); buffered instead when the write fails."""
        ts = time.time()
        ev = AuditEvent(new_event_id(ts), ts, actor, action, target, source, details or {})
        try:
            await asyncio.wait_for(self._store.append_many([ev]), 10)
            self.written_total += 1
        except Exception as e:
            log.warning("audit write failed, buffering %s: %s", action, type(e).__name__)
            self._buf.append(ev)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stellargate-audit")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._buf:
            log.error("audit log closed with %d events unwritten", len(self._buf))

    async def flush(self) -> bool:
        while self._buf:
            batch = [self._buf[i] for i in range(min(len(self._buf), 500))]
            try:
                await asyncio.wait_for(self._store.append_many(batch), 10)
            except Exception as e:
                log.warning("audit write failed, will retry: %s", type(e).__name__)
                return False
            for _ in batch:
                self._buf.popleft()
            self.written_total += len(batch)
        return True

    async def _run(self) -> None:
        reported = 0
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            if self.dropped_total != reported:
                log.warning("audit buffer full: %d events dropped so far", self.dropped_total)
                reported = self.dropped_total


class _TokenSource(Protocol):
    def api_key(self, req: Request) -> str | None: ...


def auth_failure(audit: AuditLog, req: Request, dialect: _TokenSource, code: str) -> None:
    """Buffer an authentication failure: the presented key's prefix, the client address, the path."""
    try:
        token = dialect.api_key(req)
    except Exception:  # a malformed header must not turn a 401 into a 500
        token = None
    client = req.scope.get("client")
    audit.add(
        "auth.failed",
        actor=key_prefix(token),
        target=req.path,
        source=str(client[0]) if client else None,
        details={"code": code, "method": req.method, "request_id": req.request_id},
    )


class ExhaustionAudit:
    """A usage observer: budget and quota exhaustion as security events, once per key a minute
    (a client hammering an exhausted key must not flood the log)."""

    CODES = frozenset({"budget_exceeded", "insufficient_quota"})

    def __init__(self, audit: AuditLog, every: float = 60.0) -> None:
        self._audit = audit
        self._every = every
        self._last: dict[str, float] = {}

    def __call__(self, rec: UsageRecord, ctx: Any) -> None:
        if rec.error_code not in self.CODES or rec.key_id is None:
            return
        now = time.monotonic()
        if now - self._last.get(rec.key_id, -1e9) < self._every:
            return
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[rec.key_id] = now
        self._audit.add(
            "budget.exhausted",
            actor=f"key:{rec.key_id}",
            target=rec.key_id,
            details={"code": rec.error_code, "model": rec.model, "request_id": rec.request_id},
        )


async def watch_fail_open(audit: AuditLog, limits: Any, interval: float = 5.0) -> None:
    """Fail-open events as security events: every ``interval`` seconds in which requests were
    admitted unchecked (or refused) because the limit counters were unreachable, one entry with
    the counts. Read from the limits' public counters, so the request path pays nothing more."""
    seen_open, seen_closed = limits.unavailable_open, limits.unavailable_closed
    while True:
        await asyncio.sleep(interval)
        now_open, now_closed = limits.unavailable_open, limits.unavailable_closed
        if now_open != seen_open or now_closed != seen_closed:
            audit.add(
                "limits.fail_open" if now_open != seen_open else "limits.unavailable",
                actor="system",
                details={"admitted_unchecked": now_open - seen_open, "refused": now_closed - seen_closed},
            )
            seen_open, seen_closed = now_open, now_closed
