"""The OpenAI endpoints beyond chat: when a legacy completion is forwarded or translated to chat,
and the terminal stages of embeddings and image generation.

Legacy completions go through the chat ``Invoker`` (``completions_identity`` is its identity
rule). Embeddings and images are one request and one answer each, so their terminals are a few
lines: the adapter's optional methods build and read the upstream exchange, the transport sends
it, and the client's dialect renders the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from stellargate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellargate.core.images import ImagesRequest, ImagesResponse
from stellargate.core.usage import Usage
from stellargate.dialects.openai_completions import check_translatable
from stellargate.errors import InvalidRequest
from stellargate.pipeline.context import Context, Next, Stage
from stellargate.providers.base import (
    PassthroughState,
    Target,
    UpstreamRequest,
    UpstreamResponse,
    completions_support,
    embeddings_support,
    images_support,
)
from stellargate.transport import Transport
from stellargate.web import Reply, Result


def completions_identity(ctx: Context) -> tuple[UpstreamRequest, PassthroughState] | None:
    """Forward a legacy completion natively, or (None) let the Invoker translate it to chat.

    The model's ``completions`` setting decides when given; otherwise the provider does: native
    when its adapter serves the legacy endpoint for this target, chat when it does not.
    """
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    mode = target.model.completions if target.model is not None else None
    native = completions_support(target.adapter)
    if mode != "chat" and native is not None and (mode == "native" or native.serves_completions(target)):
        return native.completions_passthrough(req, target)
    if mode == "native":
        raise InvalidRequest(
            f"The model '{req.model}' is configured for native legacy completions, but its provider "
            "has no legacy completions endpoint.",
            param="model",
            code="model_not_supported",
        )
    check_translatable(req)
    ctx.meta["completions_via"] = "chat"
    return None


class _HasModel(Protocol):
    @property
    def model(self) -> str: ...


P = TypeVar("P", bound=_HasModel)


def parse_stage(parse: Callable[[Any], P]) -> Stage:
    """Parse a non-chat body into ``ctx.payload`` (the model id into ``ctx.model``)."""

    async def stage(ctx: Context, call_next: Next) -> Result:
        body = ctx.http.json()
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            ctx.model = body["model"]  # so that even a refused request names its model in the ledger
        ctx.payload = parse(body)
        ctx.model = ctx.payload.model
        return await call_next(ctx)

    return stage


def _unsupported(model: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model '{model}' does not support {what}.", param="model", code="model_not_supported"
    )


async def _send(transport: Transport, ctx: Context, target: Target, up: UpstreamRequest) -> UpstreamResponse:
    ctx.attempts += 1
    ps = target.settings
    resp = await transport.send(up, target.provider, target.timeouts, ps.max_connections, ps.proxy)
    if resp.status >= 400:
        raise target.adapter.map_error(resp)
    return resp


def estimate_input_tokens(req: EmbeddingsRequest) -> int:
    """A rough count (4 characters a token) for upstreams that report no usage."""
    return max(1, sum(len(i) // 4 + 1 if isinstance(i, str) else len(i) for i in req.inputs))


class EmbeddingsInvoker:
    def __init__(
        self, transport: Transport, render: Callable[[EmbeddingsResponse, EmbeddingsRequest], bytes]
    ) -> None:
        self._transport = transport
        self._render = render

    async def __call__(self, ctx: Context) -> Result:
        req, target = ctx.payload, ctx.target
        assert isinstance(req, EmbeddingsRequest) and target is not None
        adapter = embeddings_support(target.adapter)
        if adapter is None:
            raise _unsupported(req.model, "embeddings")
        ctx.meta["inputs"] = len(req.inputs)
        resp = await _send(self._transport, ctx, target, adapter.embeddings_request(req, target))
        out = adapter.embeddings_response(resp, req, target)
        if out.usage is not None:
            ctx.usage = out.usage
        else:  # never meter a call as free
            ctx.usage, ctx.usage_estimated = Usage(prompt_tokens=estimate_input_tokens(req)), True
        return Reply(200, self._render(out, req))


class ImagesInvoker:
    def __init__(
        self, transport: Transport, render: Callable[[ImagesResponse, ImagesRequest], bytes]
    ) -> None:
        self._transport = transport
        self._render = render

    async def __call__(self, ctx: Context) -> Result:
        req, target = ctx.payload, ctx.target
        assert isinstance(req, ImagesRequest) and target is not None
        adapter = images_support(target.adapter)
        if adapter is None:
            raise _unsupported(req.model, "image generation")
        resp = await _send(self._transport, ctx, target, adapter.images_request(req, target))
        out = adapter.images_response(resp, req, target)
        count = len(out.images)
        ctx.usage = out.usage or Usage()
        ctx.usage.images = count  # what was delivered is what is billed
        # The ledger has no image columns: count, size and quality go in the record's meta.
        ctx.meta["images"] = count
        ctx.meta["size"] = out.size or req.size or "default"
        if req.quality is not None:
            ctx.meta["quality"] = req.quality
        return Reply(200, self._render(out, req))
