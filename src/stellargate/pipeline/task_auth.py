"""Authentication for the task API: a gateway key, or the deployment's shared SECRET_TOKEN.

The task API's clients send ``X-API-Key``. A gateway key (``sg-...``) is checked as everywhere
else. The shared token (``task_api_secret_token``, from the ``SECRET_TOKEN`` environment variable)
is compared in constant time and authenticates as one fixed principal: ``SECRET_TOKEN_KEY``, whose
id ``env:SECRET_TOKEN`` can never be a real key's id. Its calls are metered under that id (one
ledger row each, groupable and filterable like any key's), with every model allowed and the scopes
the task API needs; it is accepted by the task API only.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from stellargate.errors import AuthenticationError
from stellargate.pipeline.auth import authenticate, check_scope
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.keycache import KeyCache
from stellargate.storage.records import KeyRecord
from stellargate.web import Result

SECRET_TOKEN_KEY_ID = "env:SECRET_TOKEN"


def secret_token_key() -> KeyRecord:
    return KeyRecord(
        id=SECRET_TOKEN_KEY_ID,
        name="SECRET_TOKEN",
        key_hash="",
        prefix="",
        created_at=0.0,
        updated_at=0.0,
        models=[],
        scopes=["chat", "models"],
    )


class TaskAuth:
    def __init__(self, cache: KeyCache, secret: SecretStr | None) -> None:
        self._cache = cache
        # Bytes as they arrive: header values are latin-1 decoded by the server.
        self._secret = secret.get_secret_value().encode() if secret is not None else None
        self._principal = secret_token_key()

    async def authenticate(self, token: str | None) -> KeyRecord:
        if not token:
            raise AuthenticationError(
                "Missing API key: send it in the X-API-Key header.", code="missing_api_key"
            )
        if self._secret is not None and hmac.compare_digest(token.encode("latin-1"), self._secret):
            return self._principal
        return await authenticate(self._cache, token)


class TaskAuthStage:
    def __init__(self, auth: TaskAuth) -> None:
        self._auth = auth

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        ctx.key = await self._auth.authenticate(ctx.dialect.api_key(ctx.http))
        check_scope(ctx.key, ctx.endpoint)
        return await call_next(ctx)
