"""The Anthropic-compatible endpoints: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Messages run through the same stage chain as chat completions (auth, usage ledger with endpoint
scope ``chat``, routing, invoke), so any configured model answers: an Anthropic provider by the
identity path, any other by translation (refused by name when the request uses what only
Anthropic serves, such as server tools).

count_tokens answers ``{"input_tokens": N}`` from the gateway's own count (the BPE tokenizer the
limits and the context-window check use, ``estimate.chat_prompt_tokens``) rather than asking the
upstream: it is cheap, works for every provider, and needs no upstream call that would itself
count against rate limits. For Claude models it is an approximation (``cl100k_base``, not
Anthropic's tokenizer), as is every count the gateway makes for non-OpenAI models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellargate.dialects.anthropic import AnthropicDialect
from stellargate.dialects.anthropic_parse import parse_messages_request, untranslatable
from stellargate.errors import NotFound
from stellargate.pipeline.auth import authenticate, check_model, check_scope, model_allowed
from stellargate.pipeline.chains import model_chain, translatable
from stellargate.pipeline.context import Context
from stellargate.pipeline.estimate import chat_prompt_tokens, encoding_for, is_ready, ready
from stellargate.runtime import Runtime
from stellargate.storage.records import KeyRecord
from stellargate.web import Request, Result, Router, json_reply


class AnthropicRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dialect = AnthropicDialect()
        self.pipeline = model_chain(rt, checks=[translatable(untranslatable)])
        self._limit = rt.settings.server.max_body_bytes

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/messages", self.messages, dialect="anthropic")
        router.add("POST", "/v1/messages/count_tokens", self.count_tokens, dialect="anthropic")

    async def messages(self, req: Request) -> Result:
        await req.read_body(self._limit)
        result = await self.pipeline(Context(http=req, endpoint="chat", dialect=self.dialect))
        result.headers.append((b"request-id", req.request_id.encode()))
        return result

    async def count_tokens(self, req: Request) -> Result:
        await req.read_body(self._limit)
        token = self.dialect.api_key(req)
        key = await authenticate(self.rt.keys, token)
        check_scope(key, "chat")
        result = await self.rt.idempotency.guard(key.id, token or "", req, lambda: self._count(req, key))
        # Added after the guard: a replay carries its own request's id, not the first one's.
        result.headers.append((b"request-id", req.request_id.encode()))
        return result

    async def _count(self, req: Request, key: KeyRecord) -> Result:
        creq = parse_messages_request(req.json(), req.headers, count_only=True)
        check_model(key, creq.model)
        target = self.rt.models.resolve(creq.model)  # an unknown model is a 404, as for messages
        encoding = encoding_for(target.upstream_model)
        if not is_ready(encoding):
            await ready(encoding)  # the first count loads the tokenizer off the event loop
        return json_reply({"input_tokens": chat_prompt_tokens(creq, encoding)})

    # -- GET /v1/models in Anthropic's shape (chosen by the anthropic-version header) -------

    @staticmethod
    def claims(req: Request) -> bool:
        return "anthropic-version" in req.headers

    def _model_json(self, name: str) -> dict[str, Any]:
        m = self.rt.models.models[name]
        created = datetime.fromtimestamp(self.rt.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "type": "model",
            "id": m.name,
            "display_name": m.name,
            "created_at": created,
            "max_input_tokens": m.context_window,
            "max_tokens": m.max_output_tokens,
        }

    async def list_models(self, req: Request) -> Result:
        key = await authenticate(self.rt.keys, self.dialect.api_key(req))
        check_scope(key, "models")
        names = [n for n in self.rt.models.models if not key.models or model_allowed(tuple(key.models), n)]
        data = [self._model_json(n) for n in names]
        return json_reply(
            {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        )

    async def get_model(self, req: Request) -> Result:
        key = await authenticate(self.rt.keys, self.dialect.api_key(req))
        check_scope(key, "models")
        name = req.params["model_id"]
        if name not in self.rt.models.models or (key.models and not model_allowed(tuple(key.models), name)):
            raise NotFound(f"model: {name}", code="model_not_found", param="model")
        return json_reply(self._model_json(name))
