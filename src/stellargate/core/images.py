"""Canonical image-generation request and response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stellargate.core.usage import Usage


@dataclass(slots=True)
class ImagesRequest:
    model: str
    prompt: str
    n: int = 1
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    style: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    dialect: str = "openai"
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class GeneratedImage:
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


@dataclass(slots=True)
class ImagesResponse:
    created: int
    images: list[GeneratedImage] = field(default_factory=list)
    usage: Usage | None = None  # tokens for token-priced image models; ``images`` counts pictures
    size: str | None = None  # the size the provider reports it made, when it says
    body: bytes | None = None  # identity path: the upstream body, already in the client's dialect
