"""The Anthropic Messages dialect: the gateway answering as ``POST /v1/messages`` does.

Keys come from ``x-api-key`` or ``Authorization: Bearer`` (the official SDKs send either). Answers
are Messages (``type: message``), streams the named-event sequence ``message_start``,
``content_block_start`` / ``_delta`` / ``_stop`` per block, ``message_delta`` (stop reason and the
final, cumulative usage), ``message_stop``; errors ``{"type": "error", "error": {"type",
"message"}, "request_id"}`` with the type Anthropic pairs with the status (``ERROR_TYPES``).

Usage in Anthropic's terms: ``input_tokens`` excludes the tokens read from or written to the
prompt cache, which are reported beside it; canonical ``prompt_tokens`` is their sum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent
from stellargate.dialects.anthropic_parse import parse_messages_request
from stellargate.dialects.anthropic_render import RenderState, render_end, render_event
from stellargate.dialects.anthropic_wire import STOP_REASONS, message_id, tool_input, usage_json
from stellargate.dialects.base import Texts, error_headers, json_object
from stellargate.dialects.openai import bearer
from stellargate.dialects.sse import SSEEvent, encode
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.web import Request

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(err: GatewayError) -> str:
    t = ERROR_TYPES.get(err.http_status)
    if t is None:
        t = "api_error" if err.http_status >= 500 else "invalid_request_error"
    return t


def error_body(err: GatewayError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(err), "message": err.message}}
    if request_id:
        body["request_id"] = request_id
    return body


class AnthropicDialect:
    name: ClassVar[str] = "anthropic"
    # Its stream's message_start states the input tokens: a translated stream needs the gateway's
    # count of the prompt before the upstream reports usage (pipeline/invoke.py reads this).
    prompt_at_start: ClassVar[bool] = True

    def api_key(self, req: Request) -> str | None:
        return req.headers.get("x-api-key") or bearer(req.headers)

    def parse_request(self, body: Any, req: Request) -> ChatRequest:
        return parse_messages_request(body, req.headers)

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        c = resp.choices[0] if resp.choices else None
        content: list[dict[str, Any]] = []
        if c is not None and c.content:
            content.append({"type": "text", "text": c.content})
        for t in c.tool_calls if c is not None else []:
            content.append({"type": "tool_use", "id": t.id, "name": t.name, "input": tool_input(t.arguments)})
        reason = STOP_REASONS[c.finish_reason or "stop"] if c is not None else "end_turn"
        out = {
            "id": message_id(resp.id),
            "type": "message",
            "role": "assistant",
            "model": resp.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": usage_json(resp.usage),
        }
        return orjson.dumps(out)

    def new_render_state(self, req: ChatRequest) -> RenderState:
        return RenderState(model=req.model)

    def render_stream_event(self, ev: StreamEvent, state: RenderState) -> bytes:
        return render_event(ev, state)

    def render_stream_end(self, state: RenderState) -> bytes:
        return render_end(state)

    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        headers = error_headers(err, {"request-id": request_id})
        return err.http_status, headers, orjson.dumps(error_body(err, request_id))

    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes:
        # The official SDKs raise an APIStatusError on an `error` event.
        return encode(orjson.dumps(error_body(err, request_id)), "error")

    def answer_texts(self, body: bytes) -> Texts:
        obj = json_object(body)
        blocks = obj.get("content") if obj is not None else None
        if not isinstance(blocks, list):
            return []
        return [(0, b["text"]) for b in blocks if _is_text(b, "text") and b["text"]]

    def stream_texts(self, ev: SSEEvent) -> Texts:
        obj = json_object(ev.data)
        if obj is None:
            return []
        kind = obj.get("type")
        if kind == "content_block_delta" and _is_text(obj.get("delta"), "text_delta"):
            text = obj["delta"]["text"]
        elif kind == "content_block_start" and _is_text(obj.get("content_block"), "text"):
            text = obj["content_block"]["text"]
        else:
            return []
        return [(0, text)] if text else []


def _is_text(block: Any, kind: str) -> bool:
    return isinstance(block, dict) and block.get("type") == kind and isinstance(block.get("text"), str)
