"""Idempotency-Key: the first request with a key executes; a repeat replays its stored response.

Scoped to the API key. A repeat within ``idempotency.ttl`` with the same method, path and body
gets the first response byte for byte (status, content type, the pipeline's headers, body; a
stream as the same SSE bytes) with ``Idempotent-Replayed: true``, without reaching the provider,
the limits or the ledger. A repeat while the first still runs is a 409, one with another body a
422 (both are checked before anything else happens).

What is synchronous, and why. Only requests that carry the header pay anything here:
- the claim (one INSERT of a "running" row) happens before the upstream call: it is the lock that
  makes two workers or replicas unable to both execute the request, so it cannot be deferred;
- the response is stored before the client sees the end of it: a Reply is written before it is
  returned, a stream before its final (empty) body frame is sent. Were it stored afterwards, a
  client that got the answer and retried after a crash would be charged twice. The cost is one
  write per idempotent request, never on requests without the header.
- Only successful answers (2xx, and streams that ended without an error event) are kept. A failed
  or abandoned first request releases the key, so the client's retry executes: failures are
  exactly what clients retry, and an upstream error charged nothing to replay.

With Redis configured, finished responses are also cached there (keyed by a hash of key id and
Idempotency-Key) so repeats are answered without a database read; the database stays the
authority for the lock, so a Redis outage or flush changes nothing but speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson
import redis.asyncio as aioredis

from stellargate.errors import InvalidRequest
from stellargate.pipeline.context import Context, Next
from stellargate.settings import IdempotencySettings
from stellargate.storage.records import IdempotencyRecord, IdempotencyStore, StoredResponse
from stellargate.web import Reply, Request, Result, StreamReply

log = logging.getLogger("stellargate.idempotency")

HEADER = "idempotency-key"
REPLAYED = (b"idempotent-replayed", b"true")
MAX_KEY_LENGTH = 255
_REDIS_PREFIX = "stellargate:idem:"


def request_hash(req: Request) -> str:
    h = hashlib.sha256(req.method.encode())
    h.update(b" " + req.path.encode("utf-8", "surrogateescape") + b"\n")
    h.update(req.body)
    return h.hexdigest()


def _redis_key(key_id: str, idem_key: str) -> str:
    digest = hashlib.sha256(f"{key_id}\0{idem_key}".encode("utf-8", "surrogateescape")).hexdigest()
    return _REDIS_PREFIX + digest


class Idempotency:
    """The records: the database (authority and lock) with an optional Redis cache in front."""

    def __init__(
        self,
        store: IdempotencyStore,
        settings: IdempotencySettings,
        redis: aioredis.Redis | None = None,
        *,
        redis_prefix: str = _REDIS_PREFIX,
    ) -> None:
        self._store = store
        self.settings = settings
        self._redis = redis
        self._prefix = redis_prefix
        self._background: set[asyncio.Task[None]] = set()
        self.max_response_bytes = int(settings.max_response_mb * 1024 * 1024)

    def _rkey(self, key_id: str, idem_key: str) -> str:
        return self._prefix + _redis_key(key_id, idem_key)[len(_REDIS_PREFIX) :]

    async def claim(self, key_id: str, idem_key: str, rhash: str) -> IdempotencyRecord | str:
        """The held record to answer from, or our owner token when the request is ours to run."""
        cached = await self._cached(key_id, idem_key)
        if cached is not None:
            return cached
        now = time.time()
        owner = os.urandom(12).hex()
        rec = IdempotencyRecord(
            key_id, idem_key, rhash, "running", owner, now, now + self.settings.lock_timeout
        )
        held = await self._store.claim(rec)
        if held is None:
            return owner
        if held.response is not None:
            await self._cache(held)
        return held

    async def complete(
        self, key_id: str, idem_key: str, rhash: str, owner: str, resp: StoredResponse
    ) -> None:
        now = time.time()
        rec = IdempotencyRecord(key_id, idem_key, rhash, "done", owner, now, now + self.settings.ttl, resp)
        if not await self._store.complete(key_id, idem_key, owner, resp, rec.expires_at):
            # Our lease ran out and another request took the key over: its answer wins.
            log.warning("idempotency record lost its lease before completion")
            return
        await self._cache(rec)

    def release_soon(self, key_id: str, idem_key: str, owner: str) -> None:
        """Release from a failing or cancelled request, without making it wait."""
        task = asyncio.create_task(self._release(key_id, idem_key, owner))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, key_id: str, idem_key: str, owner: str) -> None:
        try:
            await self._store.release(key_id, idem_key, owner)
        except Exception as e:
            # The lease expires by itself; until then a retry is told 409.
            log.warning("cannot release an idempotency key: %s", type(e).__name__)

    async def purge(self) -> int:
        return await self._store.purge(time.time())

    async def run_purger(self, interval: float = 600.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                n = await self.purge()
                if n:
                    log.info("purged %d expired idempotency records", n)
            except Exception as e:
                log.warning("idempotency purge failed: %s", type(e).__name__)

    async def _cached(self, key_id: str, idem_key: str) -> IdempotencyRecord | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._rkey(key_id, idem_key))
        except Exception as e:
            log.warning("redis unavailable for idempotency reads: %s", type(e).__name__)
            return None
        if raw is None:
            return None
        head, _, body = raw.partition(b"\n") if isinstance(raw, bytes) else (b"", b"", b"")
        m = orjson.loads(head or b"null")
        if not isinstance(m, dict):
            return None
        resp = StoredResponse(m["status"], m["ct"], [(str(k), str(v)) for k, v in m["h"]], body, m["s"])
        return IdempotencyRecord(key_id, idem_key, m["rh"], "done", "", m["c"], m["e"], resp)

    async def _cache(self, rec: IdempotencyRecord) -> None:
        resp = rec.response
        ttl = rec.expires_at - time.time()
        if self._redis is None or resp is None or ttl <= 1:
            return
        head = {
            "status": resp.status,
            "ct": resp.content_type,
            "h": resp.headers,
            "s": resp.streamed,
            "rh": rec.request_hash,
            "c": rec.created_at,
            "e": rec.expires_at,
        }
        try:
            await self._redis.set(
                self._rkey(rec.key_id, rec.idem_key), orjson.dumps(head) + b"\n" + resp.body, ex=int(ttl)
            )
        except Exception as e:
            log.warning("redis unavailable for idempotency writes: %s", type(e).__name__)


def _replay(resp: StoredResponse) -> Result:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    headers.append(REPLAYED)
    ct = resp.content_type.encode("latin-1")
    if not resp.streamed:
        return Reply(resp.status, resp.body, content_type=ct, headers=headers)

    async def chunks() -> AsyncIterator[bytes]:
        yield resp.body

    return StreamReply(chunks(), status=resp.status, content_type=ct, headers=headers)


def _stored(
    result: Result, headers: list[tuple[bytes, bytes]], body: bytes, streamed: bool
) -> StoredResponse:
    """The response to replay. Rate-limit headers are left out: they described the limits when
    the first request ran, and a replay neither consumes nor reports a limit."""
    return StoredResponse(
        status=result.status,
        content_type=result.content_type.decode("latin-1"),
        headers=[
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if not k.startswith(b"x-ratelimit")
        ],
        body=body,
        streamed=streamed,
    )


class IdempotencyStage:
    """Runs right after authentication: replays and conflicts cost no limits and no ledger row."""

    def __init__(self, service: Idempotency) -> None:
        self._svc = service

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        idem_key = ctx.http.headers.get(HEADER)
        if idem_key is None or ctx.key is None:
            return await call_next(ctx)
        if not 1 <= len(idem_key) <= MAX_KEY_LENGTH:
            raise InvalidRequest(
                f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters.",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        key_id, rhash = ctx.key.id, request_hash(ctx.http)
        claim = await self._svc.claim(key_id, idem_key, rhash)
        if not isinstance(claim, str):
            if claim.request_hash != rhash:
                raise InvalidRequest(
                    "This Idempotency-Key was already used with a different request body.",
                    status=422,
                    code="idempotency_key_reused",
                )
            if claim.response is None:
                raise InvalidRequest(
                    "A request with this Idempotency-Key is still being processed; retry later.",
                    status=409,
                    code="idempotency_request_in_progress",
                )
            return _replay(claim.response)
        owner = claim
        try:
            result = await call_next(ctx)
        except BaseException:
            self._svc.release_soon(key_id, idem_key, owner)
            raise
        if isinstance(result, Reply):
            if 200 <= result.status < 300 and len(result.body) <= self._svc.max_response_bytes:
                await self._svc.complete(
                    key_id, idem_key, rhash, owner, _stored(result, result.headers, result.body, False)
                )
            else:
                self._svc.release_soon(key_id, idem_key, owner)
            return result
        # The headers as the pipeline made them: a route may add its own after this stage returns.
        headers = list(result.headers)
        result.chunks = self._tee(ctx, result, result.chunks, headers, (key_id, idem_key, rhash, owner))
        return result

    async def _tee(
        self,
        ctx: Context,
        reply: StreamReply,
        inner: AsyncIterator[bytes],
        headers: list[tuple[bytes, bytes]],
        ident: tuple[str, str, str, str],
    ) -> AsyncIterator[bytes]:
        key_id, idem_key, rhash, owner = ident
        parts: list[bytes] = []
        size = 0
        keep = True
        try:
            async with aclosing(inner) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if keep:
                        size += len(chunk)
                        keep = size <= self._svc.max_response_bytes
                        if keep:
                            parts.append(chunk)
                        else:  # too large to keep: do not hold it in memory either
                            parts.clear()
                    yield chunk
        except BaseException:
            self._svc.release_soon(key_id, idem_key, owner)
            raise
        # An error event ended the stream: that is a failure, retried rather than replayed.
        if keep and ctx.error_code is None and 200 <= reply.status < 300:
            body = b"".join(parts)
            await self._svc.complete(key_id, idem_key, rhash, owner, _stored(reply, headers, body, True))
        else:
            self._svc.release_soon(key_id, idem_key, owner)
