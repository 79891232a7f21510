"""The Gemini dialect: the gateway serving Google's ``generateContent`` API.

Answers are ``GenerateContentResponse`` objects; streams are SSE events each carrying one
``GenerateContentResponse`` (``alt=sse``), text in increments and function calls whole, with
``finishReason`` and the final ``usageMetadata`` in the last event, as Gemini sends them.
Errors are Google's ``{"error": {"code", "message", "status", "details"}}``; a stream that fails
after it started ends with such an object as its last event, which the google-genai SDK raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse, FinishReason
from stellargate.core.stream import (
    Finish,
    StreamEvent,
    StreamFailed,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from stellargate.core.usage import Usage
from stellargate.dialects.base import Texts, error_headers, json_object
from stellargate.dialects.gemini_parse import parse_generate_request
from stellargate.dialects.openai import bearer
from stellargate.dialects.sse import SSEEvent, encode
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.web import Request

# HTTP status -> google.rpc.Code name, as Google's own front ends pair them.
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH: dict[FinishReason, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",  # Gemini ends a function-calling turn with STOP
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "error": "OTHER",
}
_NO_KEY = (
    "You didn't provide an API key. Send a gateway key (sg-...) in the x-goog-api-key header "
    "or the key query parameter."
)


def usage_metadata(u: Usage) -> dict[str, Any]:
    # Gemini counts thinking apart from the answer: candidates = completion - reasoning.
    out: dict[str, Any] = {
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": max(u.completion_tokens - u.reasoning_tokens, 0),
        "totalTokenCount": u.total_tokens,
    }
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def _args(arguments: str) -> dict[str, Any]:
    try:
        v = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        v = None
    # Gemini's args is an object: text that is not one is kept, wrapped, rather than lost.
    return v if isinstance(v, dict) else {"arguments": arguments}


def _call_part(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": name, "args": _args(arguments)}
    if call_id:
        fc["id"] = call_id  # the SDK keeps it in history, so the answer can name its call
    return {"functionCall": fc}


def error_body(err: GatewayError, request_id: str) -> tuple[int, dict[str, Any]]:
    # Google never answers 422: a request it cannot accept is a 400 INVALID_ARGUMENT.
    http = 400 if err.http_status == 422 else err.http_status
    message = _NO_KEY if err.code == "missing_api_key" else err.message
    meta = {"request_id": request_id, "code": err.code}
    if err.param:
        meta["param"] = err.param
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": err.code.upper(),
            "domain": "stellargate",
            "metadata": meta,
        }
    ]
    if err.retry_after is not None:
        delay = max(1, round(err.retry_after))
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"})
    status = STATUS.get(http, "INTERNAL" if http >= 500 else "FAILED_PRECONDITION")
    return http, {"error": {"code": http, "message": message, "status": status, "details": details}}


@dataclass(slots=True)
class RenderState:
    id: str = ""
    model: str = ""
    # candidate index -> [id, name, arguments] of each call: Gemini sends a call whole, so its
    # argument fragments are gathered until the candidate finishes.
    calls: dict[int, list[list[str]]] = field(default_factory=dict)
    finishes: dict[int, FinishReason] = field(default_factory=dict)
    usage: Usage | None = None


class GeminiDialect:
    name: ClassVar[str] = "gemini"

    def api_key(self, req: Request) -> str | None:
        return req.headers.get("x-goog-api-key") or req.query.get("key") or bearer(req.headers)

    def parse_request(self, body: Any, req: Request) -> ChatRequest:
        return parse_generate_request(
            body, req.params["model"], req.params.get("action") == "streamGenerateContent"
        )

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        candidates = []
        for c in resp.choices:
            parts: list[dict[str, Any]] = [{"text": c.content}] if c.content else []
            parts += [_call_part(t.id, t.name, t.arguments) for t in c.tool_calls]
            cand: dict[str, Any] = {"index": c.index, "finishReason": _FINISH[c.finish_reason or "stop"]}
            if parts:
                cand["content"] = {"parts": parts, "role": "model"}
            candidates.append(cand)
        out: dict[str, Any] = {"candidates": candidates}
        if resp.usage is not None:
            out["usageMetadata"] = usage_metadata(resp.usage)
        out["modelVersion"] = resp.model
        out["responseId"] = resp.id
        return orjson.dumps(out)

    def new_render_state(self, req: ChatRequest) -> RenderState:
        return RenderState(model=req.model)

    def _event(self, st: RenderState, candidates: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        obj: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            obj["usageMetadata"] = usage_metadata(usage)
        obj["modelVersion"] = st.model
        obj["responseId"] = st.id
        return encode(orjson.dumps(obj))

    def render_stream_event(self, ev: StreamEvent, st: RenderState) -> bytes:
        if isinstance(ev, TextDelta):
            if not ev.text:
                return b""
            content = {"parts": [{"text": ev.text}], "role": "model"}
            return self._event(st, [{"content": content, "index": ev.index}])
        if isinstance(ev, ToolCallStart):
            st.calls.setdefault(ev.index, []).append([ev.id, ev.name, ""])
        elif isinstance(ev, ToolCallDelta):
            calls = st.calls.get(ev.index) or []
            if 0 <= ev.tool_index < len(calls):
                calls[ev.tool_index][2] += ev.arguments
        elif isinstance(ev, Finish):
            st.finishes[ev.index] = ev.reason
        elif isinstance(ev, UsageReport):
            st.usage = ev.usage
        elif isinstance(ev, StreamStart):
            st.id, st.model = ev.id, ev.model or st.model
        elif isinstance(ev, StreamFailed):
            return self.render_stream_error(ev.error, "")
        return b""

    def render_stream_end(self, st: RenderState) -> bytes:
        # The last event: each candidate's function calls and finishReason, and the final usage
        # (which an OpenAI-style upstream reports only after the finish).
        candidates = []
        for i in sorted(set(st.finishes) | set(st.calls)):
            cand: dict[str, Any] = {"index": i, "finishReason": _FINISH[st.finishes.get(i, "stop")]}
            calls = st.calls.get(i)
            if calls:
                cand["content"] = {"parts": [_call_part(*c) for c in calls], "role": "model"}
            candidates.append(cand)
        return self._event(st, candidates, st.usage)

    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        http, body = error_body(err, request_id)
        return http, error_headers(err), orjson.dumps(body)

    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes:
        return encode(orjson.dumps(error_body(err, request_id)[1]))

    def answer_texts(self, body: bytes) -> Texts:
        return _candidate_texts(json_object(body))

    def stream_texts(self, ev: SSEEvent) -> Texts:
        return _candidate_texts(json_object(ev.data))  # each event is a GenerateContentResponse


def _candidate_texts(obj: dict[str, Any] | None) -> Texts:
    candidates = obj.get("candidates") if obj is not None else None
    if not isinstance(candidates, list):
        return []
    out: Texts = []
    for i, c in enumerate(candidates):
        content = c.get("content") if isinstance(c, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            continue
        index = c.get("index")
        for p in parts:
            # A thought part is the model's reasoning summary, not its answer.
            if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"] and not p.get("thought"):
                out.append((index if isinstance(index, int) else i, p["text"]))
    return out
