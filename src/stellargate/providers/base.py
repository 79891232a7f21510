"""The one interface every provider adapter implements, and the values that cross it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from stellargate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellargate.core.images import ImagesRequest, ImagesResponse
from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent
from stellargate.core.usage import Price, Usage
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.settings import ModelSettings, ProviderSettings, Timeouts


@dataclass(frozen=True, slots=True)
class Capabilities:
    stream: bool = True
    tools: bool = True
    parallel_tools: bool = True
    vision: bool = True
    json_schema: bool = True
    usage_in_stream: bool = True
    embeddings: bool = False
    # The upstream fetches http(s) image URLs itself. When False, the gateway fetches them first
    # (stellargate.media, SSRF-guarded) and hands the adapter inline data only.
    image_urls: bool = True
    completions: bool = False  # OpenAI's legacy /completions, served natively
    images: bool = False  # image generation


@dataclass(slots=True)
class Target:
    """Where one request goes: a provider, its settings, and the upstream model id."""

    provider: str  # the configured provider name
    settings: ProviderSettings
    adapter: ProviderAdapter
    base_url: str
    upstream_model: str
    public_model: str  # the id the client sent
    model: ModelSettings | None = None
    price: Price | None = None
    # The model's own timeouts merged over the provider's (settings.TimeoutOverrides), if any.
    model_timeouts: Timeouts | None = None

    @property
    def timeouts(self) -> Timeouts:
        return self.model_timeouts or self.settings.timeouts


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(slots=True)
class PassthroughState:
    """Per-request state of an identity-path stream."""

    strip_usage: bool  # the gateway asked upstream for usage; the client did not
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ProviderAdapter(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    # The client dialect this provider speaks natively: requests in that dialect take the
    # identity path (forwarded, not round-tripped through the canonical model).
    native_dialect: ClassVar[str | None]

    def translate_request(self, req: ChatRequest, target: Target) -> UpstreamRequest: ...
    def translate_response(
        self, resp: UpstreamResponse, req: ChatRequest, target: Target
    ) -> ChatResponse: ...
    def new_stream_state(self, req: ChatRequest) -> Any: ...
    def translate_stream_event(self, ev: SSEEvent, state: Any) -> Sequence[StreamEvent]: ...
    def map_error(self, resp: UpstreamResponse) -> GatewayError: ...

    # The identity path.
    def passthrough_request(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]: ...
    def passthrough_usage(self, body: bytes) -> Usage | None: ...
    def passthrough_stream_event(self, ev: SSEEvent, state: PassthroughState) -> bytes | None: ...


# Optional parts of an adapter, one protocol per non-chat endpoint. An adapter takes part by
# declaring the capability and implementing the methods; the helpers below are how the rest of the
# gateway asks, so that a provider without them answers a clear 400 instead of an AttributeError.


@runtime_checkable
class CompletionsSupport(Protocol):
    def serves_completions(self, target: Target) -> bool:
        """Whether this target's server has the legacy endpoint (some OpenAI-compatible ones lack it)."""
        ...

    def completions_passthrough(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]:
        """The client's legacy /completions body (``req.raw``), forwarded; answered on the identity
        path (``passthrough_usage`` / ``passthrough_stream_event``)."""
        ...


@runtime_checkable
class EmbeddingsSupport(Protocol):
    def embeddings_request(self, req: EmbeddingsRequest, target: Target) -> UpstreamRequest: ...
    def embeddings_response(
        self, resp: UpstreamResponse, req: EmbeddingsRequest, target: Target
    ) -> EmbeddingsResponse: ...


@runtime_checkable
class ImagesSupport(Protocol):
    def images_request(self, req: ImagesRequest, target: Target) -> UpstreamRequest: ...
    def images_response(
        self, resp: UpstreamResponse, req: ImagesRequest, target: Target
    ) -> ImagesResponse: ...


def completions_support(adapter: ProviderAdapter) -> CompletionsSupport | None:
    a: object = adapter
    return a if adapter.capabilities.completions and isinstance(a, CompletionsSupport) else None


def embeddings_support(adapter: ProviderAdapter) -> EmbeddingsSupport | None:
    a: object = adapter
    return a if adapter.capabilities.embeddings and isinstance(a, EmbeddingsSupport) else None


def images_support(adapter: ProviderAdapter) -> ImagesSupport | None:
    a: object = adapter
    return a if adapter.capabilities.images and isinstance(a, ImagesSupport) else None
