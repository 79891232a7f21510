"""Operations endpoints: ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

import asyncio
import hmac

from stellargate.dialects.openai import bearer
from stellargate.errors import AuthenticationError, NotFound
from stellargate.runtime import Runtime
from stellargate.web import Reply, Request, Result, Router

PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class OpsRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def register(self, router: Router) -> None:
        router.add("GET", "/metrics", self.metrics)

    async def metrics(self, req: Request) -> Result:
        ms = self.rt.settings.metrics
        if not ms.enabled:
            raise NotFound("Metrics are switched off (metrics.enabled).", code="unknown_route")
        if ms.token is not None:
            token = bearer(req.headers) or ""
            if not hmac.compare_digest(token.encode(), ms.token.get_secret_value().encode()):
                raise AuthenticationError(
                    "GET /metrics needs its bearer token.", code="invalid_metrics_token"
                )
        others = await asyncio.to_thread(self.rt.metrics.read_others)
        return Reply(200, self.rt.metrics.render(others).encode(), content_type=PROMETHEUS)
