"""OpenAI's legacy Completions API (``POST /v1/completions``) as a dialect.

A legacy completion is a chat request underneath: the prompt becomes one user message, so that a
chat-only model can serve it (translated, rendered back as ``text_completion``). Where the
provider has the endpoint itself, the body in ``raw`` is forwarded unchanged (the identity path).
Parameters that only the legacy endpoint understands are refused when translating, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest, Message, TextPart
from stellargate.core.response import ChatResponse
from stellargate.core.stream import Finish, StreamEvent, StreamFailed, StreamStart, TextDelta, UsageReport
from stellargate.core.usage import Usage
from stellargate.dialects.openai import DONE, OpenAIDialect, bearer
from stellargate.dialects.openai_parse import _bool, _integer, _number, _stop, _type_error
from stellargate.dialects.sse import encode
from stellargate.errors import GatewayError, InvalidRequest, SchemaError

if TYPE_CHECKING:
    from stellargate.web import Request

# The dialect of the ChatRequest; never a provider's native dialect, so that the chat Invoker's
# default rule would translate it (the completions route decides identity itself).
DIALECT = "openai.completions"
# Legacy-only parameters: forwarded natively, refused when translating to chat.
LEGACY_ONLY = ("echo", "suffix", "best_of", "logprobs")
KNOWN = frozenset(
    {
        "model", "prompt", "stream", "stream_options", "temperature", "top_p", "max_tokens", "n", "stop",
        "seed", "presence_penalty", "frequency_penalty", "logit_bias", "user", *LEGACY_ONLY,
    }
)  # fmt: skip
DEFAULT_MAX_TOKENS = 16  # the legacy endpoint's default, kept when translating to chat


def _is_tokens(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


def _prompt(body: dict[str, Any]) -> str | None:
    """Validate ``prompt``; return it when it is one text (the only form chat can take)."""
    p = body.get("prompt")
    if p is None:
        raise SchemaError(
            "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    if isinstance(p, str):
        return p
    if _is_tokens(p):
        return None
    if isinstance(p, list) and p and all(isinstance(x, str) or _is_tokens(x) for x in p):
        return p[0] if len(p) == 1 and isinstance(p[0], str) else None
    raise _type_error("prompt", "a string, an array of strings, or an array of token arrays")


def parse_completions_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if model is None:
        raise SchemaError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise _type_error("model", "a non-empty string")
    text = _prompt(body)
    stream = _bool(body, "stream") or False
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise _type_error("stream_options", "an object")
    _bool(body, "echo")
    if body.get("suffix") is not None and not isinstance(body["suffix"], str):
        raise _type_error("suffix", "a string")
    _integer(body, "best_of", 0, 20)
    _integer(body, "logprobs", 0, 5)
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and not isinstance(logit_bias, dict):
        raise _type_error("logit_bias", "an object")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _type_error("user", "a string")
    max_tokens = _integer(body, "max_tokens", 0)
    return ChatRequest(
        model=model,
        messages=[Message(role="user", content=[TextPart(text)])] if text is not None else [],
        stream=stream,
        include_usage=bool(so and so.get("include_usage")),
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        stop=_stop(body.get("stop")),
        n=_integer(body, "n", 1, 128),
        seed=_integer(body, "seed", -(2**63)),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        logit_bias=logit_bias,
        user=user,
        extra={k: v for k, v in body.items() if k not in KNOWN},
        dialect=DIALECT,
        raw=body,
    )


def check_translatable(req: ChatRequest) -> None:
    """Refuse what a chat model cannot do for a legacy request, rather than silently ignoring it."""
    body = req.raw or {}
    if not req.messages:
        raise InvalidRequest(
            f"The model '{req.model}' is served through chat completions, which take one text "
            "prompt: send 'prompt' as a single string.",
            param="prompt",
            code="unsupported_for_chat_model",
        )
    for k in LEGACY_ONLY:
        v = body.get(k)
        if v is None or v is False or v == "" or (k == "best_of" and v == 1):
            continue
        raise InvalidRequest(
            f"'{k}' is not supported for the model '{req.model}', which is served through chat completions.",
            param=k,
            code="unsupported_for_chat_model",
        )


def usage_json(u: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _completion_id(chat_id: str) -> str:
    return "cmpl-" + chat_id[len("chatcmpl-") :] if chat_id.startswith("chatcmpl-") else chat_id


def _finish(reason: str | None) -> str:
    # The legacy endpoint knows only these three.
    return reason if reason in ("stop", "length", "content_filter") else "stop"


@dataclass(slots=True)
class RenderState:
    include_usage: bool
    id: str = ""
    model: str = ""
    created: int = 0


class OpenAICompletionsDialect:
    """Renders chat answers as legacy ``text_completion`` objects and chunks; errors as OpenAI's."""

    name: ClassVar[str] = "openai"

    def __init__(self) -> None:
        self._errors = OpenAIDialect()

    def api_key(self, req: Request) -> str | None:
        return bearer(req.headers)

    def parse_request(self, body: Any, req: Request) -> ChatRequest:
        return parse_completions_request(body)

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        out: dict[str, Any] = {
            "id": _completion_id(resp.id),
            "object": "text_completion",
            "created": resp.created,
            "model": resp.model,
            "choices": [
                {
                    "text": c.content or "",
                    "index": c.index,
                    "logprobs": None,
                    "finish_reason": _finish(c.finish_reason),
                }
                for c in resp.choices
            ],
        }
        if resp.system_fingerprint:
            out["system_fingerprint"] = resp.system_fingerprint
        if resp.usage is not None:
            out["usage"] = usage_json(resp.usage)
        return orjson.dumps(out)

    def new_render_state(self, req: ChatRequest) -> RenderState:
        return RenderState(include_usage=req.include_usage)

    def _chunk(self, st: RenderState, choices: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": st.id,
            "object": "text_completion",
            "created": st.created,
            "model": st.model,
            "choices": choices,
        }
        if st.include_usage:
            obj["usage"] = usage_json(usage) if usage is not None else None
        return encode(orjson.dumps(obj))

    def render_stream_event(self, ev: StreamEvent, st: RenderState) -> bytes:
        if isinstance(ev, TextDelta):
            return self._chunk(
                st, [{"text": ev.text, "index": ev.index, "logprobs": None, "finish_reason": None}]
            )
        if isinstance(ev, Finish):
            choice = {"text": "", "index": ev.index, "logprobs": None, "finish_reason": _finish(ev.reason)}
            return self._chunk(st, [choice])
        if isinstance(ev, StreamStart):
            st.id, st.model, st.created = _completion_id(ev.id), ev.model, ev.created
            return b""
        if isinstance(ev, UsageReport):
            return self._chunk(st, [], ev.usage) if st.include_usage else b""
        if isinstance(ev, StreamFailed):
            return self.render_stream_error(ev.error, "")
        return b""  # tool calls cannot occur: a legacy request offers no tools

    def render_stream_end(self, st: RenderState) -> bytes:
        return DONE

    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        return self._errors.render_error(err, request_id)

    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes:
        return self._errors.render_stream_error(err, request_id)
