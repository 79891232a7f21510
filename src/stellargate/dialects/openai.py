"""The OpenAI dialect: Chat Completions responses, chunk streams and the OpenAI error shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
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
from stellargate.dialects.base import Texts, choice_texts, error_headers, json_object
from stellargate.dialects.openai_parse import parse_chat_request
from stellargate.dialects.sse import SSEEvent, encode
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.web import Request

DONE = b"data: [DONE]\n\n"


def bearer(headers: dict[str, str]) -> str | None:
    h = headers.get("authorization")
    if h is None:
        return None
    scheme, _, token = h.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def usage_from_json(u: Any) -> Usage | None:
    """OpenAI's usage object -> Usage (tolerant of the subsets OpenAI-compatible servers send)."""
    if not isinstance(u, dict):
        return None
    ptd = u.get("prompt_tokens_details") or {}
    ctd = u.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(u.get("prompt_tokens") or 0),
        completion_tokens=int(u.get("completion_tokens") or 0),
        cached_tokens=int((ptd.get("cached_tokens") if isinstance(ptd, dict) else 0) or 0),
        reasoning_tokens=int((ctd.get("reasoning_tokens") if isinstance(ctd, dict) else 0) or 0),
    )


def error_body(err: GatewayError, request_id: str) -> dict[str, Any]:
    return {
        "error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code},
        "request_id": request_id,
    }


@dataclass(slots=True)
class RenderState:
    include_usage: bool
    id: str = ""
    model: str = ""
    created: int = 0
    role_sent: set[int] = field(default_factory=set)


class OpenAIDialect:
    name: ClassVar[str] = "openai"
    chunk_object: ClassVar[str] = "chat.completion.chunk"  # a stream chunk's "object"

    def api_key(self, req: Request) -> str | None:
        return bearer(req.headers)

    def parse_request(self, body: Any, req: Request) -> ChatRequest:
        return parse_chat_request(body)

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        choices = []
        for c in resp.choices:
            msg: dict[str, Any] = {"role": "assistant", "content": c.content, "refusal": c.refusal}
            if c.tool_calls:
                msg["tool_calls"] = [
                    {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                    for t in c.tool_calls
                ]
            choices.append(
                {
                    "index": c.index,
                    "message": msg,
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason or "stop",
                }
            )
        out: dict[str, Any] = {
            "id": resp.id,
            "object": "chat.completion",
            "created": resp.created,
            "model": resp.model,
            "choices": choices,
        }
        if resp.usage is not None:
            out["usage"] = usage_json(resp.usage)
        if resp.system_fingerprint:
            out["system_fingerprint"] = resp.system_fingerprint
        return orjson.dumps(out)

    def new_render_state(self, req: ChatRequest) -> RenderState:
        return RenderState(include_usage=req.include_usage)

    def _chunk(self, st: RenderState, choices: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": st.id,
            "object": self.chunk_object,
            "created": st.created,
            "model": st.model,
            "choices": choices,
        }
        if st.include_usage:
            obj["usage"] = self._usage_json(usage) if usage is not None else None
        return encode(orjson.dumps(obj))

    def _usage_json(self, u: Usage) -> dict[str, Any]:
        return usage_json(u)

    def _delta(self, st: RenderState, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if index not in st.role_sent:
            st.role_sent.add(index)
            delta = {"role": "assistant", **delta}
        return self._chunk(st, [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def render_stream_event(self, ev: StreamEvent, st: RenderState) -> bytes:
        if isinstance(ev, TextDelta):
            return self._delta(st, ev.index, {"content": ev.text})
        if isinstance(ev, ToolCallStart):
            call = {
                "index": ev.tool_index,
                "id": ev.id,
                "type": "function",
                "function": {"name": ev.name, "arguments": ""},
            }
            return self._delta(st, ev.index, {"tool_calls": [call]})
        if isinstance(ev, ToolCallDelta):
            return self._delta(
                st,
                ev.index,
                {"tool_calls": [{"index": ev.tool_index, "function": {"arguments": ev.arguments}}]},
            )
        if isinstance(ev, Finish):
            return self._delta(st, ev.index, {}, ev.reason)
        if isinstance(ev, StreamStart):
            st.id, st.model, st.created = ev.id, ev.model, ev.created
            st.role_sent.add(0)
            return self._chunk(
                st,
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            )
        if isinstance(ev, UsageReport):
            return self._chunk(st, [], ev.usage) if st.include_usage else b""
        if isinstance(ev, StreamFailed):
            return self.render_stream_error(ev.error, "")
        return b""

    def render_stream_end(self, st: RenderState) -> bytes:
        return DONE

    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        return err.http_status, error_headers(err), orjson.dumps(error_body(err, request_id))

    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes:
        # The official SDKs raise an APIError when a data event carries an "error" object.
        return encode(orjson.dumps(error_body(err, request_id)))

    def answer_texts(self, body: bytes) -> Texts:
        return choice_texts(json_object(body), "message", "content")

    def stream_texts(self, ev: SSEEvent) -> Texts:
        return [] if ev.data == b"[DONE]" else choice_texts(json_object(ev.data), "delta", "content")
