"""GET /admin/v1/deployments: each deployment's live routing state, as this process sees it.

State is per process (see pipeline/deployments.py): with several workers, the answer is the state
of the worker that took the request; ejections agree across replicas when Redis is configured.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from stellargate.errors import ModelNotFound
from stellargate.pipeline.routing import Router
from stellargate.web import Request, Result, json_reply
from stellargate.web import Router as WebRouter


class DeploymentsAdmin:
    def __init__(self, models: Router, auth: Callable[[Request], None]) -> None:
        self._models = models
        self._auth = auth

    def register(self, router: WebRouter) -> None:
        router.add("GET", "/admin/v1/deployments", self.list)

    async def list(self, req: Request) -> Result:
        self._auth(req)
        now = time.monotonic()
        groups: dict[str, list[str]] = {}
        for name in self._models.models:
            try:
                g = self._models.group(name)
            except ModelNotFound:  # a model whose providers are all unconfigured
                continue
            for m in g.members:
                groups.setdefault(m.deployment.id, []).append(name)
        data = [{**d.view(now), "models": groups.get(d.id, [])} for d in self._models.deployments.values()]
        return json_reply({"object": "list", "data": data, "pid": os.getpid()})
