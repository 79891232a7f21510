"""Gemini ``GenerateContentResponse`` -> canonical response, stream events and usage."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from stellargate.core.request import ToolCall
from stellargate.core.response import ChatResponse, Choice, FinishReason
from stellargate.core.stream import (
    Finish,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from stellargate.core.usage import Usage
from stellargate.providers.gemini_request import join_call_id

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
    "MALFORMED_RESPONSE": "error",
}


def finish_reason(v: Any, called: bool) -> FinishReason | None:
    """Gemini says STOP when it answers with function calls; OpenAI clients expect tool_calls."""
    if not isinstance(v, str) or not v or v == "FINISH_REASON_UNSPECIFIED":
        return None
    reason = _FINISH.get(v, "stop")
    return "tool_calls" if called and reason == "stop" else reason


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    try:
        return int(v) if v is not None else 0
    except (TypeError, ValueError):
        return 0


def usage_from_metadata(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    thoughts = _int(u, "thoughtsTokenCount")
    return Usage(
        # Tokens that built-in tools (search, code execution) put into the prompt are billed as input.
        prompt_tokens=_int(u, "promptTokenCount") + _int(u, "toolUsePromptTokenCount"),
        # Gemini counts thinking apart from the answer, but bills both as output, and OpenAI's
        # completion_tokens includes reasoning_tokens: so completion = candidates + thoughts.
        completion_tokens=_int(u, "candidatesTokenCount") + thoughts,
        cached_tokens=_int(u, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def new_call_id() -> str:
    # Gemini's function calls often carry no id; the client needs one to answer each call.
    return "call_" + secrets.token_hex(12)


def _call(part: dict[str, Any]) -> ToolCall | None:
    fc = part.get("functionCall")
    if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
        return None
    given = fc.get("id")
    call_id = given if isinstance(given, str) and given else new_call_id()
    signature = part.get("thoughtSignature")
    return ToolCall(
        id=join_call_id(call_id, signature if isinstance(signature, str) else None),
        name=fc["name"],
        arguments=orjson.dumps(fc.get("args") or {}).decode(),
    )


def _parts(cand: dict[str, Any]) -> list[dict[str, Any]]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _text(p: dict[str, Any]) -> str | None:
    # Thought summaries (thought: true) are the model's reasoning, not its answer.
    t = p.get("text")
    return t if isinstance(t, str) and not p.get("thought") else None


def _blocked(obj: dict[str, Any]) -> bool:
    pf = obj.get("promptFeedback")
    return isinstance(pf, dict) and bool(pf.get("blockReason"))


def chat_response(obj: dict[str, Any], model: str) -> ChatResponse:
    choices: list[Choice] = []
    for n, cand in enumerate(c for c in obj.get("candidates") or [] if isinstance(c, dict)):
        parts = _parts(cand)
        texts = [t for p in parts if (t := _text(p)) is not None]
        calls = [c for p in parts if (c := _call(p)) is not None]
        reason = finish_reason(cand.get("finishReason"), bool(calls)) or ("tool_calls" if calls else "stop")
        content = "".join(texts) if texts else (None if calls or reason == "content_filter" else "")
        choices.append(Choice(index=_index(cand, n), content=content, tool_calls=calls, finish_reason=reason))
    if not choices and _blocked(obj):
        # The prompt itself was blocked: no candidates, only promptFeedback.blockReason.
        choices.append(Choice(index=0, content=None, finish_reason="content_filter"))
    return ChatResponse(
        id=str(obj.get("responseId") or "gen-" + secrets.token_hex(12)),
        model=str(obj.get("modelVersion") or model),
        created=int(time.time()),
        choices=choices,
        usage=usage_from_metadata(obj.get("usageMetadata")),
    )


def _index(cand: dict[str, Any], default: int) -> int:
    i = cand.get("index")
    return i if isinstance(i, int) and not isinstance(i, bool) else default


@dataclass(slots=True)
class StreamState:
    model: str
    candidates: int = 1  # how many answers were asked for (candidateCount)
    started: bool = False
    tools: dict[int, int] = field(default_factory=dict)  # candidate index -> calls so far
    finished: set[int] = field(default_factory=set)
    usage: Usage | None = None
    usage_sent: bool = False


def stream_events(obj: dict[str, Any], st: StreamState) -> Sequence[StreamEvent]:
    """One SSE event of streamGenerateContent: text arrives in increments, function calls whole."""
    out: list[StreamEvent] = []
    if not st.started:
        st.started = True
        rid = obj.get("responseId") or "gen-" + secrets.token_hex(12)
        out.append(
            StreamStart(id=str(rid), model=str(obj.get("modelVersion") or st.model), created=int(time.time()))
        )
    for n, cand in enumerate(c for c in obj.get("candidates") or [] if isinstance(c, dict)):
        i = _index(cand, n)
        for p in _parts(cand):
            text = _text(p)
            if text:
                out.append(TextDelta(text, i))
                continue
            call = _call(p)
            if call is not None:
                ti = st.tools.get(i, 0)
                st.tools[i] = ti + 1
                out.append(ToolCallStart(ti, call.id, call.name, i))
                out.append(ToolCallDelta(ti, call.arguments, i))
        reason = finish_reason(cand.get("finishReason"), st.tools.get(i, 0) > 0)
        if reason is not None and i not in st.finished:
            st.finished.add(i)
            out.append(Finish(reason, i))
    if not obj.get("candidates") and _blocked(obj) and 0 not in st.finished:
        st.finished.add(0)
        out.append(Finish("content_filter", 0))
    u = usage_from_metadata(obj.get("usageMetadata"))
    if u is not None:
        st.usage = u
    # Every event repeats usageMetadata; report it once, when the answer is complete, so that an
    # OpenAI client asking for usage gets one usage chunk, after the finish.
    if len(st.finished) >= st.candidates and st.usage is not None and not st.usage_sent and u is not None:
        st.usage_sent = True
        out.append(UsageReport(st.usage))
    return out
