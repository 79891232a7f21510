"""Token usage and the usage record every request leaves in the ledger."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from the provider's cache
    cache_creation_tokens: int = 0  # prompt tokens written to the provider's cache (Anthropic)
    reasoning_tokens: int = 0  # completion tokens spent thinking
    images: int = 0  # pictures generated (image endpoints), priced per image

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Price:
    """USD per million tokens; ``per_image`` is USD per generated picture."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None
    per_image: float | None = None

    def cost(self, u: Usage) -> float:
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        uncached = max(u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens, 0)
        return (
            uncached * self.input
            + u.cached_tokens * cached_rate
            + u.cache_creation_tokens * write_rate
            + u.completion_tokens * self.output
        ) / 1_000_000 + u.images * (self.per_image or 0.0)


@dataclass(slots=True)
class UsageRecord:
    """One row of the usage ledger; exactly one per client request, written in batches."""

    request_id: str
    created_at: float  # unix seconds, when the request arrived
    key_id: str | None
    endpoint: str  # chat, completions, embeddings, ...
    dialect: str  # the client's API: openai, anthropic, gemini, tasks
    model: str  # what the client asked for
    provider: str | None
    upstream_model: str | None
    status: int  # HTTP status the client got
    streamed: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0  # arrival to last byte
    ttft_ms: float | None = None  # arrival to first byte (streams)
    error_code: str | None = None
    usage_estimated: bool = False  # upstream reported no usage; tokens were estimated
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UsageRecord:
        return cls(**d)
