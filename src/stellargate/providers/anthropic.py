"""The Anthropic Messages API as an upstream: ``POST {base}/v1/messages``.

Requests in the Anthropic dialect take the identity path: the client's body is forwarded with only
``model`` rewritten (with the client's ``anthropic-version`` / ``anthropic-beta``, which the body was
written for), and usage is read from the answer or from the stream's ``message_start`` and
``message_delta`` events; Anthropic always streams usage, so nothing needs stripping.

Any other dialect is translated through the canonical model: anthropic_request.py builds the
body (its docstring lists every mapping, and that ``json_schema`` uses structured outputs,
``output_config.format``, while ``json_object`` uses a forced tool); this module turns answers and
stream events back, and anthropic_errors.py maps errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest, ToolCall
from stellargate.core.response import ChatResponse, Choice, FinishReason
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
from stellargate.dialects.anthropic_wire import merge_usage, usage_from_json
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import GatewayError
from stellargate.providers import anthropic_errors
from stellargate.providers.anthropic_request import JSON_TOOL, request_body, uses_json_tool
from stellargate.providers.base import (
    Capabilities,
    PassthroughState,
    Target,
    UpstreamRequest,
    UpstreamResponse,
)
from stellargate.providers.errors_common import answer_object, stream_not_json

API_VERSION = "2023-06-01"  # the default; a provider's `headers` may set another
# Client headers the identity path forwards (ChatRequest.headers), as the body was written for them.
FORWARDED = ("anthropic-version", "anthropic-beta")

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # only server tools pause, and a translated request has none
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, json_tool: bool) -> FinishReason:
    if json_tool and stop_reason == "tool_use":
        return "stop"  # the forced JSON tool is the answer, not a call for the client to run
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


@dataclass(slots=True)
class StreamState:
    json_tool: bool  # the answer arrives as the input of the forced JSON tool
    usage: Usage = field(default_factory=Usage)
    blocks: dict[int, str] = field(default_factory=dict)  # upstream block index -> text/tool/json/other
    tool_index: dict[int, int] = field(default_factory=dict)  # upstream block index -> tool_index
    tools: int = 0


class AnthropicAdapter:
    name: ClassVar[str] = "anthropic"
    capabilities: ClassVar[Capabilities] = Capabilities()
    native_dialect: ClassVar[str | None] = "anthropic"

    # -- requests ---------------------------------------------------------------------------

    def _headers(self, target: Target, client: dict[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json", "anthropic-version": API_VERSION}
        h.update({k.lower(): v for k, v in target.settings.headers.items()})
        for name in FORWARDED:
            v = (client or {}).get(name)
            if not v:
                continue
            if name == "anthropic-beta" and h.get(name):
                v = h[name] + "," + v  # the operator's betas and the client's
            h[name] = v
        key = target.settings.api_key
        if key is not None and key.get_secret_value():
            h["x-api-key"] = key.get_secret_value()
        return h

    def _url(self, target: Target) -> str:
        return target.base_url + "/v1/messages"

    def translate_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        body = request_body(req, target)
        return UpstreamRequest(
            "POST", self._url(target), self._headers(target), orjson.dumps(body), stream=req.stream
        )

    def passthrough_request(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]:
        body = dict(req.raw or {})
        body["model"] = target.upstream_model
        up = UpstreamRequest(
            "POST",
            self._url(target),
            self._headers(target, req.headers),
            orjson.dumps(body),
            stream=req.stream,
        )
        return up, PassthroughState(strip_usage=False)

    # -- identity path ----------------------------------------------------------------------

    def passthrough_usage(self, body: bytes) -> Usage | None:
        return usage_from_json(answer_object(body, "content").get("usage"))

    def passthrough_stream_event(self, ev: SSEEvent, state: PassthroughState) -> bytes | None:
        kind = ev.event
        if kind == "error":
            # Raised rather than forwarded, so the call is recorded as failed; the dialect renders
            # it as Anthropic's own error event.
            raise anthropic_errors.stream_error(ev.data)
        if kind in ("message_start", "message_delta"):
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                return ev.raw
            if isinstance(obj, dict):
                u = obj.get("usage") if kind == "message_delta" else (obj.get("message") or {}).get("usage")
                state.usage = merge_usage(state.usage, u)
        return ev.raw

    # -- translated path: responses ---------------------------------------------------------

    def translate_response(self, resp: UpstreamResponse, req: ChatRequest, target: Target) -> ChatResponse:
        obj = answer_object(resp.body, "content")
        json_tool = uses_json_tool(req)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for b in obj["content"]:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and isinstance(b.get("text"), str):
                texts.append(b["text"])
            elif b.get("type") == "tool_use":
                args = orjson.dumps(b.get("input") or {}).decode()
                if json_tool and b.get("name") == JSON_TOOL:
                    texts.append(args)
                else:
                    calls.append(
                        ToolCall(id=str(b.get("id") or ""), name=str(b.get("name") or ""), arguments=args)
                    )
        choice = Choice(
            index=0,
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls,
            finish_reason=finish_reason(obj.get("stop_reason"), json_tool),
        )
        return ChatResponse(
            id=str(obj.get("id") or ""),
            model=str(obj.get("model") or target.upstream_model),
            created=int(time.time()),
            choices=[choice],
            usage=usage_from_json(obj.get("usage")),
        )

    # -- translated path: streams -----------------------------------------------------------

    def new_stream_state(self, req: ChatRequest) -> StreamState:
        return StreamState(json_tool=uses_json_tool(req))

    def translate_stream_event(self, ev: SSEEvent, state: StreamState) -> Sequence[StreamEvent]:
        if ev.event == "ping":
            return ()
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return stream_not_json(ev.data)
        if not isinstance(obj, dict):
            return ()
        kind = obj.get("type") or ev.event
        if kind == "content_block_delta":
            return self._delta(obj, state)
        if kind == "content_block_start":
            return self._block_start(obj, state)
        if kind == "message_start":
            msg = obj.get("message") or {}
            state.usage = merge_usage(state.usage, msg.get("usage")) or state.usage
            return (
                StreamStart(
                    id=str(msg.get("id") or ""), model=str(msg.get("model") or ""), created=int(time.time())
                ),
            )
        if kind == "message_delta":
            # Counts on message_delta are cumulative: they replace message_start's.
            state.usage = merge_usage(state.usage, obj.get("usage")) or state.usage
            reason = (obj.get("delta") or {}).get("stop_reason")
            return (Finish(finish_reason(reason, state.json_tool)), UsageReport(state.usage))
        if kind == "error":
            return (StreamFailed(anthropic_errors.stream_error(ev.data)),)
        return ()  # content_block_stop, message_stop, and event types added later

    def _block_start(self, obj: dict[str, Any], state: StreamState) -> Sequence[StreamEvent]:
        i, block = obj.get("index", 0), obj.get("content_block") or {}
        t = block.get("type")
        if t == "text":
            state.blocks[i] = "text"
            return (TextDelta(block["text"]),) if block.get("text") else ()
        if t != "tool_use":
            state.blocks[i] = "other"  # thinking, server tools: nothing the canonical model carries
            return ()
        start = orjson.dumps(block["input"]).decode() if block.get("input") else ""
        if state.json_tool and block.get("name") == JSON_TOOL:
            state.blocks[i] = "json"
            return (TextDelta(start),) if start else ()
        state.blocks[i] = "tool"
        ti = state.tool_index[i] = state.tools
        state.tools += 1
        out: list[StreamEvent] = [ToolCallStart(ti, str(block.get("id") or ""), str(block.get("name") or ""))]
        if start:
            out.append(ToolCallDelta(ti, start))
        return out

    def _delta(self, obj: dict[str, Any], state: StreamState) -> Sequence[StreamEvent]:
        i, d = obj.get("index", 0), obj.get("delta") or {}
        kind = state.blocks.get(i)
        if d.get("type") == "text_delta" and kind == "text" and d.get("text"):
            return (TextDelta(d["text"]),)
        if d.get("type") == "input_json_delta" and d.get("partial_json"):
            if kind == "tool":
                return (ToolCallDelta(state.tool_index[i], d["partial_json"]),)
            if kind == "json":
                return (TextDelta(d["partial_json"]),)
        return ()  # thinking, signature and citation deltas

    # -- errors -----------------------------------------------------------------------------

    def map_error(self, resp: UpstreamResponse) -> GatewayError:
        return anthropic_errors.map_error(resp.status, resp.body, resp.header("retry-after"))
