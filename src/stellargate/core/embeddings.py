"""Canonical embeddings request and response: what any client dialect means by "embed these
inputs", independent of any provider's wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stellargate.core.usage import Usage

EmbeddingInput = str | list[int]  # a text, or a text already tokenized by the client


@dataclass(slots=True)
class EmbeddingsRequest:
    model: str
    inputs: list[EmbeddingInput]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    # Parameters the canonical model has no field for, passed through to providers that accept them.
    extra: dict[str, Any] = field(default_factory=dict)
    # As on ChatRequest: the client's dialect and body, for the identity path.
    dialect: str = "openai"
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class EmbeddingsResponse:
    model: str
    vectors: list[list[float]] = field(default_factory=list)  # one per input, in input order
    usage: Usage | None = None
    # Identity path: the upstream body, already in the client's dialect; ``vectors`` is then left
    # empty, because decoding a large batch only to encode it again would cost more than the call.
    body: bytes | None = None
