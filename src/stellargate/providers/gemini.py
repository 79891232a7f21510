"""Google Gemini (the Gemini Developer API, ``generativelanguage.googleapis.com``) as an upstream.

Requests: ``POST {base}/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, the key in the ``x-goog-api-key`` header. Translation lives
beside this module: ``gemini_request`` (canonical -> Gemini body), ``gemini_schema`` (JSON Schema
-> Gemini's Schema subset), ``gemini_response`` (answers and stream events), ``gemini_errors``.

Requests in the Gemini dialect take the identity path: the client's body goes to the upstream
model unchanged, and only ``usageMetadata`` is read from the answer.

Gemini takes images only inline (or from its own Files API), so ``capabilities.image_urls`` is
False and the gateway fetches http(s) image URLs before translation (see ``stellargate.media``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from stellargate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent, StreamFailed
from stellargate.core.usage import Usage
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import GatewayError, InvalidRequest, UpstreamError
from stellargate.providers.base import (
    Capabilities,
    PassthroughState,
    Target,
    UpstreamRequest,
    UpstreamResponse,
)
from stellargate.providers.errors_common import json_object, stream_not_json
from stellargate.providers.gemini_errors import error_from_body, map_error
from stellargate.providers.gemini_request import request_body
from stellargate.providers.gemini_response import (
    StreamState,
    chat_response,
    stream_events,
    usage_from_metadata,
)

API_VERSION = "v1beta"  # the version with every feature used here (systemInstruction, tools, schemas)


def _json_object(body: bytes) -> dict[str, Any]:
    return json_object(body, "The upstream returned JSON that is not an object.")


def model_path(model: str) -> str:
    """``models/gemini-2.0-flash``; a tuned model keeps its own collection."""
    if model.startswith(("models/", "tunedModels/")):
        return model
    return "models/" + quote(model, safe="-._~")


class GeminiAdapter:
    name: ClassVar[str] = "gemini"
    capabilities: ClassVar[Capabilities] = Capabilities(embeddings=True, image_urls=False)
    native_dialect: ClassVar[str | None] = "gemini"

    # -- requests ---------------------------------------------------------------------------

    def _url(self, target: Target, action: str) -> str:
        base = target.base_url.rstrip("/")
        if not base.endswith(("/v1beta", "/v1", "/v1alpha")):
            base += "/" + API_VERSION
        return f"{base}/{model_path(target.upstream_model)}:{action}"

    def _headers(self, target: Target) -> dict[str, str]:
        h = {"content-type": "application/json", **target.settings.headers}
        key = target.settings.api_key
        if key is not None and key.get_secret_value():
            h["x-goog-api-key"] = key.get_secret_value()
        return h

    def _post(self, target: Target, body: dict[str, Any], stream: bool) -> UpstreamRequest:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest(
            "POST", self._url(target, action), self._headers(target), orjson.dumps(body), stream=stream
        )

    def translate_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        return self._post(target, request_body(req), req.stream)

    def passthrough_request(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]:
        # The body as sent, but for a `model` field: the model is the path's (an alias may differ).
        # Gemini reports usage in every response and every stream event: nothing to add or strip.
        body = {k: v for k, v in (req.raw or {}).items() if k != "model"}
        return self._post(target, body, req.stream), PassthroughState(strip_usage=False)

    # -- responses --------------------------------------------------------------------------

    def passthrough_usage(self, body: bytes) -> Usage | None:
        obj = _json_object(body)
        if not isinstance(obj.get("candidates"), list) and "promptFeedback" not in obj:
            raise UpstreamError("The upstream returned a response without candidates.", upstream_body=body)
        return usage_from_metadata(obj.get("usageMetadata"))

    def passthrough_stream_event(self, ev: SSEEvent, state: PassthroughState) -> bytes | None:
        if b'"usageMetadata"' in ev.data:
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                return ev.raw
            if isinstance(obj, dict):
                u = usage_from_metadata(obj.get("usageMetadata"))
                if u is not None:
                    state.usage = u  # every event carries the running total; the last one counts
        return ev.raw

    def translate_response(self, resp: UpstreamResponse, req: ChatRequest, target: Target) -> ChatResponse:
        return chat_response(_json_object(resp.body), target.upstream_model)

    def new_stream_state(self, req: ChatRequest) -> StreamState:
        return StreamState(model=req.model, candidates=req.n or 1)

    def translate_stream_event(self, ev: SSEEvent, state: StreamState) -> Sequence[StreamEvent]:
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return stream_not_json(ev.data)
        if isinstance(obj, list) and len(obj) == 1:
            obj = obj[0]
        if not isinstance(obj, dict):
            return ()
        if "error" in obj:
            return (StreamFailed(error_from_body(500, obj, ev.data)),)
        return stream_events(obj, state)

    # -- errors -----------------------------------------------------------------------------

    def map_error(self, resp: UpstreamResponse) -> GatewayError:
        return map_error(resp)

    # -- embeddings (batchEmbedContents) ----------------------------------------------------

    def embeddings_request(self, req: EmbeddingsRequest, target: Target) -> UpstreamRequest:
        model = model_path(target.upstream_model)
        requests = []
        for i, text in enumerate(req.inputs):
            if not isinstance(text, str):
                raise InvalidRequest(
                    "Gemini embeds text only; token-id inputs cannot be sent to this provider.",
                    param=f"input[{i}]",
                    code="unsupported_input",
                )
            r: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if req.dimensions is not None:
                r["outputDimensionality"] = req.dimensions
            task = req.extra.get("task_type")
            if isinstance(task, str):
                r["taskType"] = task
            requests.append(r)
        body = orjson.dumps({"requests": requests})
        return UpstreamRequest("POST", self._url(target, "batchEmbedContents"), self._headers(target), body)

    def embeddings_response(
        self, resp: UpstreamResponse, req: EmbeddingsRequest, target: Target
    ) -> EmbeddingsResponse:
        obj = _json_object(resp.body)
        items = obj.get("embeddings")
        if not isinstance(items, list):
            raise UpstreamError("The upstream returned embeddings without data.", upstream_body=resp.body)
        vectors: list[list[float]] = []
        for e in items:
            values = e.get("values") if isinstance(e, dict) else None
            if not isinstance(values, list):
                raise UpstreamError(
                    "The upstream returned an embedding without values.", upstream_body=resp.body
                )
            vectors.append([float(v) for v in values])
        # batchEmbedContents reports no usage; the usage stage estimates it.
        return EmbeddingsResponse(model=target.upstream_model, vectors=vectors)
