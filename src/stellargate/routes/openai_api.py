"""The OpenAI-compatible endpoints: chat completions and models."""

from __future__ import annotations

from typing import Any, Protocol

from stellargate.dialects.base import Dialect
from stellargate.dialects.openai import OpenAIDialect, bearer
from stellargate.errors import GatewayError, NotFound
from stellargate.pipeline.auth import authenticate, check_scope, model_allowed
from stellargate.pipeline.chains import model_chain
from stellargate.pipeline.context import Context
from stellargate.runtime import Runtime
from stellargate.web import Reply, Request, Result, Router, json_reply


class ModelsView(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def claims(self, req: Request) -> bool: ...
    async def list_models(self, req: Request) -> Result: ...
    async def get_model(self, req: Request) -> Result: ...


class OpenAIRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dialect = OpenAIDialect()
        self.chat_pipeline = model_chain(rt)
        self._limit = rt.settings.server.max_body_bytes
        self._views: list[ModelsView] = []

    def add_models_view(self, view: ModelsView) -> None:
        """Another dialect's models list, for requests it claims on the shared /v1/models path."""
        self._views.append(view)

    async def _other_view(self, req: Request, get: bool) -> Result | None:
        for v in self._views:
            if v.claims(req):
                try:
                    return await (v.get_model(req) if get else v.list_models(req))
                except GatewayError as e:
                    status, headers, body = v.dialect.render_error(e, req.request_id)
                    return Reply(
                        status, body, headers=[(k.encode(), val.encode()) for k, val in headers.items()]
                    )
        return None

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/chat/completions", self.chat)
        router.add("GET", "/v1/models", self.list_models)
        router.add("GET", "/v1/models/{model_id}", self.get_model)

    async def chat(self, req: Request) -> Result:
        await req.read_body(self._limit)
        return await self.chat_pipeline(Context(http=req, endpoint="chat", dialect=self.dialect))

    def _model_json(self, name: str) -> dict[str, Any]:
        m = self.rt.models.models[name]
        return {
            "id": m.name,
            "object": "model",
            "created": self.rt.started_at,
            "owned_by": m.provider,
            "context_window": m.context_window,
        }

    async def list_models(self, req: Request) -> Result:
        other = await self._other_view(req, get=False)
        if other is not None:
            return other
        key = await authenticate(self.rt.keys, bearer(req.headers))
        check_scope(key, "models")
        names = [n for n in self.rt.models.models if not key.models or model_allowed(tuple(key.models), n)]
        return json_reply({"object": "list", "data": [self._model_json(n) for n in names]})

    async def get_model(self, req: Request) -> Result:
        other = await self._other_view(req, get=True)
        if other is not None:
            return other
        key = await authenticate(self.rt.keys, bearer(req.headers))
        check_scope(key, "models")
        name = req.params["model_id"]
        if name not in self.rt.models.models or (key.models and not model_allowed(tuple(key.models), name)):
            raise NotFound(f"The model '{name}' does not exist.", code="model_not_found", param="model")
        return json_reply(self._model_json(name))
