"""One adapter for every OpenAI-compatible server: OpenAI, Groq, DeepSeek, Mistral, Together,
OpenRouter, vLLM, Ollama, llama.cpp server and LM Studio differ only by the data in PRESETS.

Requests in the OpenAI dialect take the identity path: the client's body is forwarded with only
the model id rewritten (and usage requested on streams, stripped again if the client did not ask).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest, ImagePart, Message, OtherPart, TextPart, ToolCall
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
from stellargate.dialects.openai import usage_from_json
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailable,
)
from stellargate.providers.base import (
    Capabilities,
    PassthroughState,
    Target,
    UpstreamRequest,
    UpstreamResponse,
)
from stellargate.providers.errors_common import (
    CONTEXT_OVERFLOW,
    answer_object,
    context_overflow,
    map_json_error,
    not_json,
    overflows,
    stream_not_json,
)
from stellargate.providers.openai_compat_extra import OpenAIExtras


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    key_env: str | None  # the environment variable its users already export
    url_env: str | None = None  # for local servers: the base URL comes from the environment
    needs_key: bool = True


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "ollama": Preset("http://127.0.0.1:11434/v1", None, "OLLAMA_BASE_URL", needs_key=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", "VLLM_API_KEY", "VLLM_BASE_URL", needs_key=False),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", None, "LLAMACPP_BASE_URL", needs_key=False),
    "lmstudio": Preset("http://127.0.0.1:1234/v1", None, "LMSTUDIO_BASE_URL", needs_key=False),
}

# The context-overflow 400s of OpenAI-compatible servers that do not send OpenAI's
# ``context_length_exceeded`` code (OpenAI and Groq do, and pass through as they are).
_OVERFLOW = (
    # vLLM, DeepSeek, OpenAI without a code, OpenRouter ("This endpoint's ..."): "This model's
    # maximum context length is 16384 tokens. However, you requested 122946 tokens (...)"
    re.compile(r"maximum context length is \d+ tokens", re.IGNORECASE),
    # Mistral: "Prompt contains 40982 tokens and 0 draft tokens, too large for model with 32768
    # maximum context length"
    re.compile(r"too large for model with \d+ maximum context length", re.IGNORECASE),
    # llama.cpp server: "the request exceeds the available context size, try increasing it" and
    # "request (4390 tokens) exceeds the available context size (4096 tokens), try increasing it"
    re.compile(r"exceeds the available context size", re.IGNORECASE),
    # Ollama: "prompt too long; exceeded max context length by 4096 tokens", and "the input length
    # exceeds the context length"
    re.compile(r"prompt too long; exceeded (?:max )?context length", re.IGNORECASE),
    re.compile(r"input length exceeds the context length", re.IGNORECASE),
)
# llama.cpp's dedicated error type, sent with HTTP 400 (500 by some versions).
_OVERFLOW_TYPE = "exceed_context_size_error"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _finish(v: Any) -> FinishReason | None:
    return _FINISH.get(v, "stop") if isinstance(v, str) else None


def _message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if all(isinstance(p, TextPart) for p in m.content):
        out["content"] = m.text() if m.content or m.role != "assistant" else None
    else:
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                url = p.url or f"data:{p.media_type or 'image/png'};base64,{p.data}"
                iu: dict[str, Any] = {"url": url}
                if p.detail:
                    iu["detail"] = p.detail
                parts.append({"type": "image_url", "image_url": iu})
            elif isinstance(p, OtherPart):
                parts.append(p.raw)
        out["content"] = parts
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def request_json(req: ChatRequest, model: str) -> dict[str, Any]:
    """The canonical request as an OpenAI Chat Completions body."""
    body: dict[str, Any] = {**req.extra, "model": model, "messages": [_message_json(m) for m in req.messages]}
    if req.tools is not None:
        tools = []
        for t in req.tools:
            fn: dict[str, Any] = {"name": t.name}
            if t.description is not None:
                fn["description"] = t.description
            if t.parameters is not None:
                fn["parameters"] = t.parameters
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    tc = req.tool_choice
    if tc is not None:
        body["tool_choice"] = (
            {"type": "function", "function": {"name": tc.name}} if tc.mode == "function" else tc.mode
        )
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": rf.type}
    for k in (
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
    ):
        v = getattr(req, k)
        if v is not None:
            body[k] = v
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass(slots=True)
class StreamState:
    started: bool = False
    # (choice index, upstream tool index) -> whether the call's start was seen
    tools_seen: set[tuple[int, int]] = field(default_factory=set)


class OpenAICompatAdapter(OpenAIExtras):
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[Capabilities] = Capabilities(embeddings=True, completions=True, images=True)
    native_dialect: ClassVar[str | None] = "openai"

    # -- requests ---------------------------------------------------------------------------

    def _headers(self, target: Target) -> dict[str, str]:
        h = {"content-type": "application/json", **target.settings.headers}
        key = target.settings.api_key
        if key is not None and key.get_secret_value():
            h["authorization"] = "Bearer " + key.get_secret_value()
        return h

    def translate_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        return self._post(target, "/chat/completions", request_json(req, target.upstream_model), req.stream)

    def passthrough_request(
        self, req: ChatRequest, target: Target
    ) -> tuple[UpstreamRequest, PassthroughState]:
        return self._forward(req, target, "/chat/completions")

    # -- responses --------------------------------------------------------------------------

    def passthrough_usage(self, body: bytes) -> Usage | None:
        return usage_from_json(answer_object(body, "choices").get("usage"))

    def passthrough_stream_event(self, ev: SSEEvent, state: PassthroughState) -> bytes | None:
        if ev.data == b"[DONE]":
            return ev.raw
        if b'"usage"' not in ev.data:
            return ev.raw
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return ev.raw
        if not isinstance(obj, dict) or "usage" not in obj:
            return ev.raw
        u = obj["usage"]
        if u:
            state.usage = usage_from_json(u)
        if not state.strip_usage:
            return ev.raw
        if u and not obj.get("choices"):
            return None  # the usage-only chunk the client did not ask for
        del obj["usage"]
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def translate_response(self, resp: UpstreamResponse, req: ChatRequest, target: Target) -> ChatResponse:
        try:
            obj = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            raise not_json(resp.body) from None
        choices: list[Choice] = []
        for c in obj.get("choices") or []:
            msg = c.get("message") or {}
            calls = [
                ToolCall(
                    id=t.get("id", ""),
                    name=t["function"]["name"],
                    arguments=t["function"].get("arguments", ""),
                )
                for t in msg.get("tool_calls") or []
                if isinstance(t, dict) and isinstance(t.get("function"), dict)
            ]
            choices.append(
                Choice(
                    index=c.get("index", len(choices)),
                    content=msg.get("content"),
                    tool_calls=calls,
                    finish_reason=_finish(c.get("finish_reason")),
                    refusal=msg.get("refusal"),
                    logprobs=c.get("logprobs"),
                )
            )
        return ChatResponse(
            id=obj.get("id") or "",
            model=obj.get("model") or target.upstream_model,
            created=obj.get("created") or int(time.time()),
            choices=choices,
            usage=usage_from_json(obj.get("usage")),
            system_fingerprint=obj.get("system_fingerprint"),
        )

    def new_stream_state(self, req: ChatRequest) -> StreamState:
        return StreamState()

    def translate_stream_event(self, ev: SSEEvent, state: StreamState) -> Sequence[StreamEvent]:
        if ev.data == b"[DONE]":
            return ()
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return stream_not_json(ev.data)
        if not isinstance(obj, dict):
            return ()
        if "error" in obj:
            return (StreamFailed(self._error_from_body(500, obj, ev.data)),)
        out: list[StreamEvent] = []
        if not state.started:
            state.started = True
            out.append(
                StreamStart(
                    id=obj.get("id") or "",
                    model=obj.get("model") or "",
                    created=obj.get("created") or int(time.time()),
                )
            )
        for c in obj.get("choices") or []:
            i = c.get("index", 0)
            d = c.get("delta") or {}
            if d.get("content"):
                out.append(TextDelta(d["content"], i))
            for t in d.get("tool_calls") or []:
                ti = t.get("index", 0)
                fn = t.get("function") or {}
                if (i, ti) not in state.tools_seen:
                    state.tools_seen.add((i, ti))
                    out.append(ToolCallStart(ti, t.get("id") or "", fn.get("name") or "", i))
                if fn.get("arguments"):
                    out.append(ToolCallDelta(ti, fn["arguments"], i))
            fr = _finish(c.get("finish_reason"))
            if fr is not None:
                out.append(Finish(fr, i))
        u = usage_from_json(obj.get("usage"))
        if u is not None:
            out.append(UsageReport(u))
        return out

    # -- errors -----------------------------------------------------------------------------

    def map_error(self, resp: UpstreamResponse) -> GatewayError:
        return map_json_error(resp, self._error_from_body)

    def _error_from_body(self, status: int, obj: Any, raw: bytes) -> GatewayError:
        e = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(e, str):  # some compatible servers send {"error": "text"}
            e = {"message": e}
        if e is None and isinstance(obj, dict) and obj.get("object") == "error":
            e = obj  # vLLM and Mistral: {"object": "error", "message": ..., "type": ..., "code": 400}
        e = e if isinstance(e, dict) else {}
        message = str(e.get("message") or f"The upstream answered with HTTP {status}.")
        code = e.get("code") if isinstance(e.get("code"), str) else None
        param = e.get("param") if isinstance(e.get("param"), str) else None
        kw: dict[str, Any] = {"upstream_status": status, "upstream_body": raw}
        if code != CONTEXT_OVERFLOW and (
            (status == 400 and overflows(message, _OVERFLOW))
            or (status in (400, 500) and e.get("type") == _OVERFLOW_TYPE)
        ):
            return context_overflow(message, **kw)
        if status in (401, 403):
            # The message would name (part of) the gateway's provider key: never pass it on.
            return UpstreamAuthError("The upstream provider refused the gateway's credentials.", **kw)
        if status == 404:
            if code == "model_not_found":
                return ModelNotFound(message, param="model", **kw)
            return UpstreamError(f"The upstream has no such endpoint (HTTP 404): {message}", **kw)
        if status == 429:
            return RateLimited(message, code=code or "upstream_rate_limited", **kw)
        if 400 <= status < 500:
            return InvalidRequest(
                message, code=code, param=param, status=status if status in (413, 422) else 400, **kw
            )
        if status in (502, 503, 529):
            return UpstreamUnavailable(message, **kw)
        return UpstreamError(message, **kw)
