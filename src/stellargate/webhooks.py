"""Webhooks: events to registered endpoints, signed per Standard Webhooks, delivered at least once.

Signing (https://www.standardwebhooks.com): each request carries ``webhook-id`` (the same on every
attempt of a message), ``webhook-timestamp`` (unix seconds) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the base64 part of the
endpoint's ``whsec_`` secret. During a secret rotation both secrets sign, space-separated, so a
receiver holding either verifies. ``verify()`` below is the receiver's side.

Delivery: ``emit`` writes one row per subscribed endpoint (the database is the queue, so an event
survives a restart and any worker or replica may send it); a poller per process claims due rows
with a lease and POSTs them. 2xx is delivered; 410 Gone disables the endpoint and cancels its
pending deliveries; anything else is retried after ``backoff_initial * 2**(attempt-1)`` seconds
(capped at ``backoff_max``) times a random factor in [0.5, 1.5) so that retries of many messages
do not arrive in step, up to ``max_attempts``. URLs are checked against private, loopback and
link-local addresses with media.py's guard (at registration and at every connection) unless
``webhooks.allow_private``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from yarl import URL

from stellargate.media import MediaRefused, _check_url, _GuardedResolver
from stellargate.settings import WebhookSettings
from stellargate.storage.records import WebhookDelivery, WebhookEndpoint, WebhookStore

log = logging.getLogger("stellargate.webhooks")

EVENT_TYPES = frozenset(
    {
        "budget.threshold",
        "key.expiring",
        "deployment.ejected",
        "deployment.recovered",
        "job.completed",
        "webhook.test",
    }
)
ROTATION_OVERLAP = 86400.0  # seconds the previous secret keeps signing after a rotation
LEASE = 120.0  # seconds a claimed delivery is held before another sender may retry it


class WebhookVerificationError(Exception):
    pass


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def verify(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless ``body`` was signed by (one of) ``secret``.

    ``headers`` are the request's, looked up case-insensitively; a timestamp more than
    ``tolerance`` seconds away from ``now`` is refused, so a captured request cannot be replayed
    later. Receivers should also drop a ``webhook-id`` they have already processed.
    """
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts)
    except ValueError:
        raise WebhookVerificationError("bad webhook-timestamp") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = {sign(s, msg_id, timestamp, body) for s in secrets}
    for candidate in sigs.split():
        if any(hmac.compare_digest(candidate, e) for e in expected):
            return
    raise WebhookVerificationError("no matching signature")


def check_url(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s) or names a non-public address (host names are checked
    again at each connection, where the resolver's answer is what is used)."""
    try:
        _check_url(URL(url), allow_private)
    except (MediaRefused, ValueError) as e:
        raise ValueError(str(e).replace("image URLs", "webhook URLs")) from None


def backoff(settings: WebhookSettings, attempts: int) -> float:
    base = min(settings.backoff_initial * 2 ** (attempts - 1), settings.backoff_max)
    return float(base) * random.uniform(0.5, 1.5)


class Webhooks:
    def __init__(self, store: WebhookStore, settings: WebhookSettings) -> None:
        self.store = store
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self.sent_total = 0
        self.failed_total = 0

    async def emit(
        self, event_type: str, data: dict[str, Any], *, dedupe: str | None = None, only: str | None = None
    ) -> int:
        """Queue an event for every enabled endpoint subscribed to it; the number queued.

        ``dedupe`` makes the message id deterministic, so the same event emitted by several
        workers or replicas (a breaker opening in each) is queued once per endpoint. ``only``
        sends to that one endpoint whatever it subscribed to (a test event).
        """
        now = time.time()
        raw = dedupe or os.urandom(12).hex()
        msg_id = "msg_" + hashlib.sha256(f"{event_type}:{raw}".encode()).hexdigest()[:26]
        body = orjson.dumps({"type": event_type, "timestamp": _iso(now), "data": data})
        rows = [
            WebhookDelivery(ep.id, msg_id, event_type, body, now, next_attempt_at=now, updated_at=now)
            for ep in await self.store.list_endpoints()
            if ep.enabled and (ep.id == only if only else not ep.events or event_type in ep.events)
        ]
        n = await self.store.enqueue(rows)
        if n:
            self._wake.set()
        return n

    # -- the sender ---------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.settings.allow_private else _GuardedResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, limit=100)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            )
        return self._session

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.deliver_due()
                except Exception as e:
                    log.warning("webhook delivery cycle failed: %s", type(e).__name__)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                except TimeoutError:
                    pass
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def deliver_due(self) -> int:
        due = await self.store.claim_due(time.time(), LEASE, 50)
        if not due:
            return 0
        endpoints = {ep.id: ep for ep in await self.store.list_endpoints()}
        await asyncio.gather(*(self._attempt(d, endpoints.get(d.endpoint_id)) for d in due))
        return len(due)

    async def _attempt(self, d: WebhookDelivery, ep: WebhookEndpoint | None) -> None:
        now = time.time()
        d.updated_at = now
        if ep is None or not ep.enabled:
            d.state = "cancelled"
            await self.store.finish(d)
            return
        d.attempts += 1
        status, error = await self._post(ep, d)
        d.last_status, d.last_error = status, error
        if status is not None and 200 <= status < 300:
            d.state = "delivered"
            self.sent_total += 1
        elif status == 410:
            d.state = "cancelled"
            await self.store.update_endpoint(
                ep.id, enabled=False, disabled_reason="endpoint answered 410 Gone"
            )
            await self.store.cancel_pending(ep.id, now)
            log.warning("webhook endpoint %s answered 410: disabled", ep.id)
        elif d.attempts >= self.settings.max_attempts:
            d.state = "failed"
            self.failed_total += 1
        else:
            d.next_attempt_at = now + backoff(self.settings, d.attempts)
        await self.store.finish(d)

    async def _post(self, ep: WebhookEndpoint, d: WebhookDelivery) -> tuple[int | None, str | None]:
        now = time.time()
        secrets = [s["secret"] for s in ep.secrets if s.get("expires_at") is None or s["expires_at"] > now]
        ts = int(now)
        headers = {
            "content-type": "application/json",
            "user-agent": "StellarGate-Webhooks/1",
            "webhook-id": d.msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature_header(secrets, d.msg_id, ts, d.body),
        }
        try:
            check_url(ep.url, self.settings.allow_private)
            async with self._client().post(ep.url, data=d.body, headers=headers, allow_redirects=False) as r:
                await r.read()
                return r.status, None if r.status < 300 else f"HTTP {r.status}"
        except (MediaRefused, ValueError) as e:
            return None, f"refused: {e}"
        except Exception as e:  # connection refused, timeout, TLS, ...: retried with backoff
            return None, type(e).__name__


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
