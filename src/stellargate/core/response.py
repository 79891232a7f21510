"""Canonical chat response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stellargate.core.request import ToolCall
from stellargate.core.usage import Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(slots=True)
class Choice:
    index: int
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    refusal: str | None = None
    logprobs: Any = None


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
