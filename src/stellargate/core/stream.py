"""Canonical stream events: what a provider's stream means, whatever its wire.

Adapters turn each upstream SSE event into zero or more of these; dialects render them. Events
carry the choice index so that ``n > 1`` streams stay correct.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellargate.core.response import FinishReason
from stellargate.core.usage import Usage
from stellargate.errors import GatewayError


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int
    # The prompt's tokens when known before the answer (the gateway's count): for client APIs
    # whose first event states them, as Anthropic's message_start does.
    prompt_tokens: int | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    index: int = 0


@dataclass(slots=True)
class ToolCallStart:
    tool_index: int  # position of this call among the choice's tool calls
    id: str
    name: str
    index: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    tool_index: int
    arguments: str  # a fragment of the JSON arguments text
    index: int = 0


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    index: int = 0


@dataclass(slots=True)
class UsageReport:
    usage: Usage


@dataclass(slots=True)
class StreamFailed:
    error: GatewayError


StreamEvent = StreamStart | TextDelta | ToolCallStart | ToolCallDelta | Finish | UsageReport | StreamFailed
