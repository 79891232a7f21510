"""The OpenAI-compatible adapter beyond chat: legacy completions, embeddings, image generation.

A mixin of ``OpenAICompatAdapter``, kept apart so that each module stays small. Requests in the
OpenAI dialect take the identity path here too: the client's body is forwarded with only the model
rewritten, and only usage is read from the answer.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from typing import Any, ClassVar

import orjson

from stellargate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellargate.core.images import GeneratedImage, ImagesRequest, ImagesResponse
from stellargate.core.request import ChatRequest
from stellargate.core.usage import Usage
from stellargate.dialects.openai import usage_from_json
from stellargate.errors import UpstreamError
from stellargate.providers.base import PassthroughState, Target, UpstreamRequest, UpstreamResponse
from stellargate.providers.errors_common import json_object

# Provider types whose servers have no legacy /v1/completions endpoint: their legacy completions
# are translated to chat (see pipeline/nonchat.py). A server of type `openai` behind another
# base_url is assumed to have it; a model's `completions: chat` setting says otherwise.
NO_LEGACY_COMPLETIONS = frozenset({"groq", "deepseek", "mistral"})


def _json_object(body: bytes) -> dict[str, Any]:
    return json_object(body, "The upstream returned a body that is not a JSON object.")


def _tail_usage(body: bytes) -> dict[str, Any] | None:
    """The top-level ``usage`` member of a large body, without parsing the vectors before it.

    OpenAI-compatible servers put ``usage`` after ``data``; from its key to the end of the body is
    the rest of the top-level object, so ``{`` + that tail is a small JSON object of its own.
    Anything unexpected (a nested key, another layout) fails to parse and the caller parses all.
    """
    i = body.rfind(b'"usage"')
    if i < 0:
        return None
    try:
        obj = orjson.loads(b"{" + body[i:])
    except orjson.JSONDecodeError:
        return None
    u = obj.get("usage") if isinstance(obj, dict) else None
    return u if isinstance(u, dict) else None


def _decode_vector(v: Any, body: bytes) -> list[float]:
    if isinstance(v, list):
        return [float(x) for x in v]
    if isinstance(v, str):
        floats = array("f")
        floats.frombytes(base64.b64decode(v))
        if sys.byteorder == "big":  # the wire format is little-endian float32
            floats.byteswap()
        return floats.tolist()
    raise UpstreamError(
        "The upstream returned an embedding that is neither floats nor base64.", upstream_body=body
    )


class OpenAIExtras:
    native_dialect: ClassVar[str | None] = "openai"

    def _headers(self, target: Target) -> dict[str, str]:  # provided by OpenAICompatAdapter
        raise NotImplementedError

    def _post(self, target: Target, path: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest(
            "POST", target.base_url + path, self._headers(target), orjson.dumps(body), stream=stream
        )

    def _forward(
        self, req: ChatRequest, target: Target, path: str
    ) -> tuple[UpstreamRequest, PassthroughState]:
        """The identity path: the client's body to ``path`` with only the model rewritten."""
        body = dict(req.raw or {})
        body["model"] = target.upstream_model
        strip = False
        if req.stream and not req.include_usage:
            # Meter every stream: ask upstream for usage, and take it back out for the client.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            strip = True
        return self._post(target, path, body, req.stream), PassthroughState(strip_usage=strip)

    # -- legacy completions -----------------------------------------------------------------

    def serves_completions(self, target: Target) -> bool:
        return target.settings.type not in NO_LEGACY_COMPLETIONS

    def completions_passthrough(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]:
        return self._forward(req, target, "/completions")

    # -- embeddings -------------------------------------------------------------------------

    def embeddings_request(self, req: EmbeddingsRequest, target: Target) -> UpstreamRequest:
        if req.dialect == self.native_dialect:
            body = dict(req.raw or {})
            body["model"] = target.upstream_model
            return self._post(target, "/embeddings", body)
        out: dict[str, Any] = {**req.extra, "model": target.upstream_model, "input": req.inputs}
        # base64 is a quarter of the bytes of JSON floats, and decodes faster.
        out["encoding_format"] = "base64"
        if req.dimensions is not None:
            out["dimensions"] = req.dimensions
        if req.user is not None:
            out["user"] = req.user
        return self._post(target, "/embeddings", out)

    def embeddings_response(
        self, resp: UpstreamResponse, req: EmbeddingsRequest, target: Target
    ) -> EmbeddingsResponse:
        body = resp.body
        if req.dialect == self.native_dialect:
            u = _tail_usage(body)
            if u is None:
                obj = _json_object(body)
                if not isinstance(obj.get("data"), list):
                    raise UpstreamError("The upstream returned embeddings without data.", upstream_body=body)
                u = obj.get("usage")
            return EmbeddingsResponse(model=target.upstream_model, usage=usage_from_json(u), body=body)
        obj = _json_object(body)
        data = obj.get("data")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise UpstreamError("The upstream returned embeddings without data.", upstream_body=body)
        ordered = sorted(data, key=lambda d: d.get("index") if isinstance(d.get("index"), int) else 0)
        return EmbeddingsResponse(
            model=str(obj.get("model") or target.upstream_model),
            vectors=[_decode_vector(d.get("embedding"), body) for d in ordered],
            usage=usage_from_json(obj.get("usage")),
        )

    # -- images -----------------------------------------------------------------------------

    def images_request(self, req: ImagesRequest, target: Target) -> UpstreamRequest:
        if req.dialect == self.native_dialect:
            body = dict(req.raw or {})
            body["model"] = target.upstream_model
            return self._post(target, "/images/generations", body)
        out: dict[str, Any] = {**req.extra, "model": target.upstream_model, "prompt": req.prompt, "n": req.n}
        for k in ("size", "quality", "response_format", "style", "user"):
            v = getattr(req, k)
            if v is not None:
                out[k] = v
        return self._post(target, "/images/generations", out)

    def images_response(self, resp: UpstreamResponse, req: ImagesRequest, target: Target) -> ImagesResponse:
        obj = _json_object(resp.body)
        data = obj.get("data")
        if not isinstance(data, list):
            raise UpstreamError("The upstream returned no images.", upstream_body=resp.body)
        images = [
            GeneratedImage(
                url=d.get("url") if isinstance(d.get("url"), str) else None,
                b64_json=d.get("b64_json") if isinstance(d.get("b64_json"), str) else None,
                revised_prompt=d.get("revised_prompt") if isinstance(d.get("revised_prompt"), str) else None,
            )
            for d in data
            if isinstance(d, dict)
        ]
        u = obj.get("usage")
        usage = Usage(images=len(images))
        if isinstance(u, dict):  # token-priced image models report tokens as input/output
            usage.prompt_tokens = _int(u.get("input_tokens"))
            usage.completion_tokens = _int(u.get("output_tokens"))
        created = obj.get("created")
        return ImagesResponse(
            created=created if isinstance(created, int) else int(time.time()),
            images=images,
            usage=usage,
            size=obj.get("size") if isinstance(obj.get("size"), str) else None,
            body=resp.body if req.dialect == self.native_dialect else None,
        )


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
