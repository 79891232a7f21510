"""OpenAI's legacy Completions API (``POST /v1/completions``) as a dialect.

A legacy completion is a chat request underneath: the prompt becomes one user message, so that a
chat-only model can serve it (translated, rendered back as ``text_completion``). Where the
provider has the endpoint itself, the body in ``raw`` is forwarded unchanged (the identity path).
Parameters that only the legacy endpoint understands are refused when translating, never dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from stellargate.core.request import ChatRequest, Message, TextPart
from stellargate.core.response import ChatResponse
from stellargate.core.stream import Finish, StreamEvent, StreamFailed, StreamStart, TextDelta, UsageReport
from stellargate.core.usage import Usage
from stellargate.dialects.base import Texts, choice_texts, json_object
from stellargate.dialects.openai import OpenAIDialect, RenderState
from stellargate.dialects.sse import SSEEvent
from stellargate.dialects.validate import (
    boolean,
    integer,
    is_tokens,
    missing,
    number,
    optional_object,
    optional_string,
    required_model,
    stop,
    type_error,
)
from stellargate.errors import InvalidRequest

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


def _prompt(body: dict[str, Any]) -> str | None:
    """Validate ``prompt``; return it when it is one text (the only form chat can take)."""
    p = body.get("prompt")
    if p is None:
        raise missing("prompt")
    if isinstance(p, str):
        return p
    if is_tokens(p):
        return None
    if isinstance(p, list) and p and all(isinstance(x, str) or is_tokens(x) for x in p):
        return p[0] if len(p) == 1 and isinstance(p[0], str) else None
    raise type_error("prompt", "a string, an array of strings, or an array of token arrays")


def parse_completions_request(body: Any) -> ChatRequest:
    model = required_model(body)
    text = _prompt(body)
    stream = boolean(body, "stream") or False
    so = optional_object(body, "stream_options")
    boolean(body, "echo")
    optional_string(body, "suffix")
    integer(body, "best_of", 0, 20)
    integer(body, "logprobs", 0, 5)
    logit_bias = optional_object(body, "logit_bias")
    user = optional_string(body, "user")
    max_tokens = integer(body, "max_tokens", 0)
    return ChatRequest(
        model=model,
        messages=[Message(role="user", content=[TextPart(text)])] if text is not None else [],
        stream=stream,
        include_usage=bool(so and so.get("include_usage")),
        temperature=number(body, "temperature", 0, 2),
        top_p=number(body, "top_p", 0, 1),
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        stop=stop(body.get("stop")),
        n=integer(body, "n", 1, 128),
        seed=integer(body, "seed", -(2**63)),
        presence_penalty=number(body, "presence_penalty", -2, 2),
        frequency_penalty=number(body, "frequency_penalty", -2, 2),
        logit_bias=logit_bias,
        user=user,
        extra={k: v for k, v in body.items() if k not in KNOWN},
        dialect=DIALECT,
        raw=body,
    )


def prompt_list(req: ChatRequest) -> list[Any]:
    """The prompts a parsed request was sent with: several (texts or token arrays) or one."""
    p = (req.raw or {}).get("prompt")
    if isinstance(p, list) and p and not is_tokens(p):
        return p
    return [p] if p is not None else []


def generations(req: ChatRequest) -> int:
    """Answers the upstream generates (and bills), each up to ``max_tokens``: ``best_of`` (or
    ``n``, the larger) for each prompt, even if fewer are returned."""
    best_of = (req.raw or {}).get("best_of")
    per_prompt = max(req.n or 1, best_of if isinstance(best_of, int) else 1)
    return per_prompt * max(1, len(prompt_list(req)))


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


class OpenAICompletionsDialect(OpenAIDialect):
    """Renders chat answers as legacy ``text_completion`` objects and chunks; keys, stream framing
    and errors are the OpenAI dialect's."""

    chunk_object: ClassVar[str] = "text_completion"

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

    def _usage_json(self, u: Usage) -> dict[str, Any]:
        return usage_json(u)

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

    def answer_texts(self, body: bytes) -> Texts:
        return choice_texts(json_object(body), "text")

    def stream_texts(self, ev: SSEEvent) -> Texts:
        return [] if ev.data == b"[DONE]" else choice_texts(json_object(ev.data), "text")
