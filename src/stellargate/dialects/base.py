"""The interface of an inbound dialect (a client API the gateway speaks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from stellargate.core.request import ChatRequest
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent
from stellargate.errors import GatewayError

if TYPE_CHECKING:
    from stellargate.web import Request


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


def error_headers(err: GatewayError, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of an error answer: the error's own, then ``extra``, then ``retry-after`` in
    whole seconds (at least 1) when the error says when to retry."""
    headers = dict(err.headers)
    if extra:
        headers.update(extra)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return headers
