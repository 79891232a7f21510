"""The Gemini-compatible endpoints: ``models/{model}:generateContent``, ``:streamGenerateContent``
(``alt=sse``) and the models list, under ``/v1beta``, ``/v1`` and ``/api/v1beta``.

Generation runs through the same stage chain as chat completions (auth, usage ledger with the
``chat`` scope, routing, invoke), so any configured model answers: a Gemini provider by the
identity path, any other by translation (refused by name when the request uses what only Gemini
serves, see ``gemini_parse.untranslatable``).

The google-genai SDK puts the model id into the path unescaped, so ``fake/gpt-4o`` arrives as
two path segments; the routes take up to ``MAX_SEGMENTS`` and join them. ``GET /v1/models`` is
the OpenAI list (the path is the same); the Gemini list is at ``/v1beta/models``.
"""

from __future__ import annotations

from typing import Any

from stellargate.dialects.gemini import GeminiDialect
from stellargate.dialects.gemini_parse import untranslatable
from stellargate.errors import InvalidRequest, NotFound
from stellargate.pipeline.auth import authenticate, check_scope, model_allowed
from stellargate.pipeline.chains import model_chain, translatable
from stellargate.pipeline.context import Context
from stellargate.runtime import Runtime
from stellargate.web import Request, Result, Router, json_reply

PREFIXES = ("/v1beta", "/v1", "/api/v1beta")  # /api/v1/... reaches us as /v1/... (see app.py)
MAX_SEGMENTS = 4
ACTIONS = ("generateContent", "streamGenerateContent")


def _segments(params: dict[str, str]) -> str:
    return "/".join(params[f"s{i}"] for i in range(len(params)))


def model_name(path_model: str) -> str:
    """``models/gpt-4o`` and ``gpt-4o`` both name the gateway model ``gpt-4o``."""
    return path_model[len("models/") :] if path_model.startswith("models/") else path_model


class GeminiRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dialect = GeminiDialect()
        self.pipeline = model_chain(rt, checks=[translatable(untranslatable)])
        self._limit = rt.settings.server.max_body_bytes

    def register(self, router: Router) -> None:
        for prefix in PREFIXES:
            for n in range(1, MAX_SEGMENTS + 1):
                path = f"{prefix}/models/" + "/".join(f"{{s{i}}}" for i in range(n))
                router.add("POST", path, self.generate, dialect="gemini")
                if prefix != "/v1":  # /v1/models/{id} is the OpenAI model lookup
                    router.add("GET", path, self.get_model, dialect="gemini")
            if prefix != "/v1":
                router.add("GET", f"{prefix}/models", self.list_models, dialect="gemini")

    async def generate(self, req: Request) -> Result:
        model, sep, action = _segments(req.params).rpartition(":")
        if not sep or not model:
            raise NotFound(f"Unknown path {req.path}: expected models/{{model}}:generateContent.")
        if action not in ACTIONS:
            raise NotFound(f"The method '{action}' is not served by this gateway.", code="unknown_method")
        if action == "streamGenerateContent" and req.query.get("alt") != "sse":
            raise InvalidRequest(
                "streamGenerateContent is served as server-sent events only: add ?alt=sse.", param="alt"
            )
        req.params = {"model": model_name(model), "action": action}
        await req.read_body(self._limit)
        return await self.pipeline(Context(http=req, endpoint="chat", dialect=self.dialect))

    def _model_json(self, name: str) -> dict[str, Any]:
        m = self.rt.models.models[name]
        return {
            "name": f"models/{m.name}",
            "version": "001",
            "displayName": m.name,
            "description": f"{m.upstream_model} served by the provider '{m.provider}'",
            "inputTokenLimit": m.context_window or 0,
            "outputTokenLimit": m.max_output_tokens or 0,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
        }

    @staticmethod
    def claims(req: Request) -> bool:
        """A models request from a Gemini client (google-genai defaults to API version v1)."""
        return "x-goog-api-key" in req.headers or b"key=" in req.query_string

    async def list_models(self, req: Request) -> Result:
        key = await authenticate(self.rt.keys, self.dialect.api_key(req))
        check_scope(key, "models")
        names = [n for n in self.rt.models.models if not key.models or model_allowed(tuple(key.models), n)]
        return json_reply({"models": [self._model_json(n) for n in names]})

    async def get_model(self, req: Request) -> Result:
        key = await authenticate(self.rt.keys, self.dialect.api_key(req))
        check_scope(key, "models")
        name = model_name(req.params.get("model_id") or _segments(req.params))
        if name not in self.rt.models.models or (key.models and not model_allowed(tuple(key.models), name)):
            raise NotFound(f"models/{name} is not found.", code="model_not_found", param="model")
        return json_reply(self._model_json(name))
