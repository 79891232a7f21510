"""The interface of an inbound dialect (a client API the gateway speaks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.web import Request

# (choice index, text) pairs of an answer, in the order they came.
Texts = list[tuple[int, str]]


class Dialect(Protocol):
    name: ClassVar[str]

    def api_key(self, req: Request) -> str | None: ...
    def parse_request(self, body: Any, req: Request) -> ChatRequest: ...
    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes: ...
    def new_render_state(self, req: ChatRequest) -> Any: ...
    def render_stream_event(self, ev: StreamEvent, state: Any) -> bytes: ...
    def render_stream_end(self, state: Any) -> bytes: ...
    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]: ...
    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes: ...
    # The answer text read back from this API's wire, for prompt logging (promptlog.py): the
    # identity path forwards a provider's bytes, so what the client got is the one place both
    # paths can be read alike. Never raise; a body or event without text gives [].
    def answer_texts(self, body: bytes) -> Texts: ...
    def stream_texts(self, ev: SSEEvent) -> Texts: ...


def error_headers(err: GatewayError, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of an error answer: the error's own, then ``extra``, then ``retry-after`` in
    whole seconds (at least 1) when the error says when to retry."""
    headers = dict(err.headers)
    if extra:
        headers.update(extra)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return headers


def json_object(data: bytes) -> dict[str, Any] | None:
    """``data`` parsed, when it is a JSON object; None for anything else (never an error)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def choice_texts(obj: dict[str, Any] | None, *path: str) -> Texts:
    """The text at ``path`` in each of ``obj["choices"]`` (OpenAI's shapes), by choice index."""
    choices = obj.get("choices") if obj is not None else None
    if not isinstance(choices, list):
        return []
    out: Texts = []
    for i, c in enumerate(choices):
        v: Any = c
        for name in path:
            v = v.get(name) if isinstance(v, dict) else None
        if isinstance(v, str) and v:
            index = c.get("index")
            out.append((index if isinstance(index, int) else i, v))
    return out
