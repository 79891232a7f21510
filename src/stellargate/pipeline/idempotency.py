"""Idempotency-Key: the first request with a key executes; a repeat replays its stored response.

Every POST honours it, through this one implementation: the model routes by `IdempotencyStage`
(right after authentication in the model chain), the others (the admin API's POSTs,
``/v1/messages/count_tokens``) by calling `Idempotency.guard` once they have authenticated the
caller. A key is scoped to the caller: an API key's id, or ``admin`` for the admin key.

A repeat within ``idempotency.ttl`` with the same method, path and body gets the first response
byte for byte (status, content type, the handler's headers, body; a stream as the same SSE bytes)
with ``Idempotent-Replayed: true``, without running the handler again (no provider call, no
limit, no ledger row, no second key created). A repeat while the first still runs is a 409, one
with another body a 422 (both are checked before anything else happens).

What is synchronous, and why. Only requests that carry the header pay anything here:
- the claim (one INSERT of a "running" row) happens before the handler runs: it is the lock that
  makes two workers or replicas unable to both execute the request, so it cannot be deferred;
- the response is stored before the client sees the end of it: a Reply is written before it is
  returned, a stream before its final (empty) body frame is sent. Were it stored afterwards, a
  client that got the answer and retried after a crash would be charged twice. The cost is one
  write per idempotent request, never on requests without the header.
- Only successful answers (2xx, and streams that ended without an error event) are kept. A failed
  or abandoned first request releases the key, so the client's retry executes: failures are
  exactly what clients retry, and an upstream error charged nothing to replay.

Nothing is kept in clear. Some answers hold a secret shown once (a created or rotated API key, a
webhook signing secret) and any may hold what a client would not leave in a database (a
completion), so every record is sealed the same way, whatever the route. The record's keys are
derived (HMAC-SHA256, extract then expand) from the credential the request authenticated with and
the Idempotency-Key value: the credential is the API key as sent or the admin key, neither of
which the database holds (it keeps an API key's SHA-256 only). The row is found by one derived
value (the ``idem_key`` column holds it, never the header's value), the request hash is keyed by
another, and the handler's headers and body are encrypted with AES-256-GCM under a third. So the
database or Redis alone decrypts nothing and cannot confirm a guessed Idempotency-Key. The price
is a few HMACs and one AES-GCM pass over the body, paid only with the header; and a repeat made
with another secret of the same key (after a rotation) finds no record and executes afresh.

With Redis configured, finished records are also cached there (sealed the same way, under the
same derived lookup) so repeats are answered without a database read; the database stays the
authority for the lock, so a Redis outage or flush changes nothing but speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stellargate.errors import GatewayError, InvalidRequest
from stellargate.pipeline.context import Context, Next
from stellargate.settings import IdempotencySettings
from stellargate.storage.records import IdempotencyRecord, IdempotencyStore, StoredResponse
from stellargate.web import Reply, Request, Result, StreamReply

log = logging.getLogger("stellargate.idempotency")

HEADER = "idempotency-key"
REPLAYED = (b"idempotent-replayed", b"true")
MAX_KEY_LENGTH = 255
_REDIS_PREFIX = "stellargate:idem:"
_LABEL = b"stellargate-idempotency-v1\0"
_SEALED_V1 = b"\x01"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class RecordKeys:
    """What one (credential, scope, Idempotency-Key) derives: nothing here is stored but ``lookup``."""

    lookup: str  # the record's id within its scope (the ``idem_key`` column, the Redis key)
    mac: bytes  # keys the request hash
    seal: bytes  # the AES-256-GCM key of the stored response

    @classmethod
    def derive(cls, credential: str, scope: str, idem_key: str) -> RecordKeys:
        enc = "utf-8", "surrogateescape"
        msg = _LABEL + scope.encode(*enc) + b"\0" + idem_key.encode(*enc)
        prk = hmac.digest(credential.encode(*enc), msg, "sha256")
        return cls(
            lookup=hmac.digest(prk, b"lookup", "sha256").hex(),
            mac=hmac.digest(prk, b"request", "sha256"),
            seal=hmac.digest(prk, b"seal", "sha256"),
        )

    def request_hash(self, req: Request) -> str:
        h = hmac.new(self.mac, req.method.encode(), hashlib.sha256)
        h.update(b" " + req.path.encode("utf-8", "surrogateescape") + b"\n")
        h.update(req.body)
        return h.hexdigest()

    def seal_response(self, resp: StoredResponse) -> StoredResponse:
        """The same response with its headers and body encrypted into ``body`` (headers empty)."""
        plain = orjson.dumps(resp.headers) + b"\n" + resp.body
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.seal).encrypt(nonce, plain, _aad(resp))
        return StoredResponse(resp.status, resp.content_type, [], _SEALED_V1 + nonce + sealed, resp.streamed)

    def open_response(self, stored: StoredResponse) -> StoredResponse | None:
        """The response as it was sent; None when it was not sealed by these keys (altered)."""
        blob = stored.body
        if blob[:1] != _SEALED_V1 or len(blob) < 1 + _NONCE:
            return None
        try:
            plain = AESGCM(self.seal).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _aad(stored))
        except InvalidTag:
            return None
        head, _, body = plain.partition(b"\n")
        headers = [(str(k), str(v)) for k, v in orjson.loads(head)]
        return StoredResponse(stored.status, stored.content_type, headers, body, stored.streamed)


def _aad(resp: StoredResponse) -> bytes:
    # The clear columns are bound to the ciphertext: an altered status or type fails to open.
    return f"{resp.status}\0{resp.content_type}\0{int(resp.streamed)}".encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class _Run:
    """A request that holds its key: only its owner token may complete or release the record."""

    scope: str
    keys: RecordKeys
    rhash: str
    owner: str


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

    async def guard(
        self,
        scope: str,
        credential: str,
        req: Request,
        call: Callable[[], Awaitable[Result]],
        *,
        failed: Callable[[], bool] | None = None,
    ) -> Result:
        """``call()`` under the request's Idempotency-Key, if it has one: run once, replay after.

        ``scope`` and ``credential`` are the authenticated caller's (authenticate before calling:
        a replay is shown only to whoever may make the request). ``failed`` tells, once a stream
        has ended, whether it ended in an error event (not kept)."""
        idem_key = req.headers.get(HEADER)
        if idem_key is None:
            return await call()
        if not 1 <= len(idem_key) <= MAX_KEY_LENGTH:
            raise InvalidRequest(
                f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters.",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        keys = RecordKeys.derive(credential, scope, idem_key)
        rhash = keys.request_hash(req)
        claim = await self._claim(scope, keys, rhash)
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
        run = _Run(scope, keys, rhash, claim)
        try:
            result = await call()
        except BaseException:
            self.release_soon(scope, keys.lookup, run.owner)
            raise
        if isinstance(result, Reply):
            if 200 <= result.status < 300 and len(result.body) <= self.max_response_bytes:
                await self._complete(run, _stored(result, result.headers, result.body, False))
            else:
                self.release_soon(scope, keys.lookup, run.owner)
            return result
        # The headers as the handler made them: a route may add its own after this returns.
        headers = list(result.headers)
        result.chunks = self._tee(run, result, result.chunks, headers, failed)
        return result

    async def _claim(self, scope: str, keys: RecordKeys, rhash: str) -> IdempotencyRecord | str:
        """The held record to answer from (opened), or our owner token when the request is ours."""
        cached = await self._cached(scope, keys)
        if cached is not None:
            return cached
        now = time.time()
        owner = os.urandom(12).hex()
        rec = IdempotencyRecord(
            scope, keys.lookup, rhash, "running", owner, now, now + self.settings.lock_timeout
        )
        held = await self._store.claim(rec)
        if held is None:
            return owner
        if held.response is not None:
            opened = keys.open_response(held.response)
            if opened is None:
                # Only an altered row can fail to open: refuse rather than run the request twice.
                log.error("an idempotency record failed its integrity check (scope %s)", scope)
                raise GatewayError("The stored response of this Idempotency-Key cannot be read.")
            await self._cache(held)  # as stored: sealed
            held.response = opened
        return held

    async def _complete(self, run: _Run, resp: StoredResponse) -> None:
        now = time.time()
        sealed = run.keys.seal_response(resp)
        rec = IdempotencyRecord(
            run.scope, run.keys.lookup, run.rhash, "done", run.owner, now, now + self.settings.ttl, sealed
        )
        if not await self._store.complete(run.scope, run.keys.lookup, run.owner, sealed, rec.expires_at):
            # Our lease ran out and another request took the key over: its answer wins.
            log.warning("idempotency record lost its lease before completion")
            return
        await self._cache(rec)

    def release_soon(self, scope: str, lookup: str, owner: str) -> None:
        """Release from a failing or cancelled request, without making it wait."""
        task = asyncio.create_task(self._release(scope, lookup, owner))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, scope: str, lookup: str, owner: str) -> None:
        try:
            await self._store.release(scope, lookup, owner)
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

    def _rkey(self, scope: str, lookup: str) -> str:
        return f"{self._prefix}{scope}:{lookup}"

    async def _cached(self, scope: str, keys: RecordKeys) -> IdempotencyRecord | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._rkey(scope, keys.lookup))
        except Exception as e:
            log.warning("redis unavailable for idempotency reads: %s", type(e).__name__)
            return None
        if not isinstance(raw, bytes):
            return None
        head, _, body = raw.partition(b"\n")
        try:
            m = orjson.loads(head)
            sealed = StoredResponse(int(m["status"]), str(m["ct"]), [], body, bool(m["s"]))
            rhash, created, expires = str(m["rh"]), float(m["c"]), float(m["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # not a record of ours: the database answers
        opened = keys.open_response(sealed)
        if opened is None:
            return None
        return IdempotencyRecord(scope, keys.lookup, rhash, "done", "", created, expires, opened)

    async def _cache(self, rec: IdempotencyRecord) -> None:
        """Cache a finished record as stored (sealed)."""
        resp = rec.response
        ttl = rec.expires_at - time.time()
        if self._redis is None or resp is None or ttl <= 1:
            return
        head = {
            "status": resp.status,
            "ct": resp.content_type,
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

    async def _tee(
        self,
        run: _Run,
        reply: StreamReply,
        inner: AsyncIterator[bytes],
        headers: list[tuple[bytes, bytes]],
        failed: Callable[[], bool] | None,
    ) -> AsyncIterator[bytes]:
        parts: list[bytes] = []
        size = 0
        keep = True
        try:
            async with aclosing(inner) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if keep:
                        size += len(chunk)
                        keep = size <= self.max_response_bytes
                        if keep:
                            parts.append(chunk)
                        else:  # too large to keep: do not hold it in memory either
                            parts.clear()
                    yield chunk
        except BaseException:
            self.release_soon(run.scope, run.keys.lookup, run.owner)
            raise
        # An error event ended the stream: that is a failure, retried rather than replayed.
        if keep and not (failed is not None and failed()) and 200 <= reply.status < 300:
            await self._complete(run, _stored(reply, headers, b"".join(parts), True))
        else:
            self.release_soon(run.scope, run.keys.lookup, run.owner)


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
        if ctx.key is None or HEADER not in ctx.http.headers:
            return await call_next(ctx)
        # The key as sent, which authentication accepted: it seals the record (see above).
        credential = ctx.dialect.api_key(ctx.http) or ""
        return await self._svc.guard(
            ctx.key.id,
            credential,
            ctx.http,
            lambda: call_next(ctx),
            failed=lambda: ctx.error_code is not None,
        )
