"""Canonical chat request: what any client dialect means, independent of any provider's wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image given either by URL (``url``) or inline (``data`` base64 + ``media_type``)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    type: Literal["image"] = "image"


@dataclass(slots=True)
class OtherPart:
    """A content part the canonical model does not interpret (audio, files): kept for the identity
    path; an adapter that cannot express it refuses the request."""

    raw: dict[str, Any]
    type: Literal["other"] = "other"


Part = TextPart | ImagePart | OtherPart


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)
    name: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # on role == "tool"

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    """``mode`` auto / none / required; ``name`` set when one function is forced."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False  # the client asked for usage in the stream
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    # Parameters the canonical model has no field for, passed through to providers that accept them.
    extra: dict[str, Any] = field(default_factory=dict)
    # The client's dialect and its body as parsed, so a provider whose native API is that dialect
    # can forward it without a lossy round trip (the identity path).
    dialect: str = "openai"
    raw: dict[str, Any] | None = None
    # Request headers of the client's dialect that the identity path forwards with the body
    # (e.g. anthropic-version, anthropic-beta: the body was written for them). Never credentials.
    headers: dict[str, str] = field(default_factory=dict)
