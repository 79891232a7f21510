"""Authentication and authorisation of a gateway API key."""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from functools import lru_cache

from stellargate import apikeys
from stellargate.errors import AuthenticationError, PermissionDenied
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.keycache import KeyCache
from stellargate.storage.records import KeyRecord
from stellargate.web import Result


@lru_cache(maxsize=4096)
def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    return any(fnmatchcase(model, p) for p in patterns)


def check_model(key: KeyRecord, model: str) -> None:
    if key.models and not model_allowed(tuple(key.models), model):
        raise PermissionDenied(
            f"This API key is not allowed to use the model '{model}'.",
            param="model",
            code="model_not_allowed",
        )


def check_scope(key: KeyRecord, scope: str) -> None:
    if "*" not in key.scopes and scope not in key.scopes:
        raise PermissionDenied(f"This API key lacks the '{scope}' scope.", code="scope_not_allowed")


async def authenticate(cache: KeyCache, token: str | None) -> KeyRecord:
    if not token:
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer sg-...'.",
            code="missing_api_key",
        )
    if not apikeys.well_formed(token):
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    rec = await cache.lookup(apikeys.hash_key(token))
    if rec is None:
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    if rec.revoked_at is not None:
        raise AuthenticationError("This API key has been revoked.", code="key_revoked")
    if not rec.enabled:
        raise AuthenticationError("This API key is disabled.", code="key_disabled")
    if rec.expires_at is not None and time.time() >= rec.expires_at:
        raise AuthenticationError("This API key has expired.", code="key_expired")
    return rec


class AuthStage:
    def __init__(self, cache: KeyCache) -> None:
        self._cache = cache

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        ctx.key = await authenticate(self._cache, ctx.dialect.api_key(ctx.http))
        check_scope(ctx.key, ctx.endpoint)
        return await call_next(ctx)
