"""FakeAnthropic: an Anthropic Messages API upstream for gateway tests, faithful to Anthropic's wire.

In process::

    async with FakeAnthropic(api_key="sk-ant-upstream") as up:
        client = anthropic.AsyncAnthropic(base_url=up.base_url, api_key="sk-ant-upstream")

``base_url`` has no ``/v1`` (Anthropic clients add it). Authentication by ``x-api-key`` or
``Authorization: Bearer`` (x-api-key wins when both are sent); ``anthropic-version`` is required.
Requests are validated as Anthropic validates them (_anthropic_validate.py) and answered by the
deterministic fake model (_anthropic_model.py). Faults as for FakeOpenAI (``set_fault``, the
``x-fake-fault`` header, a ``[[fault:SPEC]]`` marker in the body) plus ``stream_error_after=N``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import _anthropic_errors as errors
from tests.fakes._anthropic_errors import AnthropicHTTPError
from tests.fakes._anthropic_faults import AnthropicFault, coerce
from tests.fakes._anthropic_model import (
    PromptCache,
    count_input_tokens,
    error_event,
    generate,
    message_body,
    stream_events,
)
from tests.fakes._anthropic_validate import VERSIONS, validate
from tests.fakes._faults import FAULT_HEADER, Fault, FaultSpecError
from tests.fakes._server import UNPARSEABLE, FakeServer, parse_body, stall_or_drop
from tests.fakes._text import random_id
from tests.fakes._transport import SSE_CONTENT_TYPE, ClientGone, Watcher

DEFAULT_MODELS: tuple[str, ...] = (
    "claude-opus-4-7",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5-20250929",
)
BAD_JSON_BODY = b'{"id": "msg_01broken", "type": "message", "role": "assistant", "content": [{"ty'


@dataclass
class Exchange:
    request: web.Request
    body: Any
    request_id: str
    started: float
    fault: AnthropicFault

    @property
    def wants_stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


Endpoint = Callable[[Exchange], Awaitable[web.StreamResponse]]


class FakeAnthropic(FakeServer):
    """An aiohttp server speaking Anthropic's Messages API (messages, count_tokens, models).

    ``api_key=None`` accepts any key. ``cache_min_tokens`` is the shortest prefix the prompt cache
    stores (Anthropic: 1024 for most models). Observations: ``requests``, ``stream_disconnects``
    (time.monotonic() of each client that left a stream early), ``active_streams``.
    """

    fault_class = AnthropicFault

    def __init__(
        self,
        *,
        api_key: str | None = "sk-ant-upstream",
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        chunk_delay: float = 0.0,
        words_per_chunk: int = 2,
        fault: Fault | str | None = None,
        cache_min_tokens: int = 1024,
        organization_id: str = "4f1c0e6a-5b7d-4c3e-9a2b-fake00000000",
    ) -> None:
        super().__init__(
            api_key=api_key,
            host=host,
            port=port,
            models=models,
            chunk_delay=chunk_delay,
            words_per_chunk=words_per_chunk,
            fault=fault,
        )
        self.cache = PromptCache(min_tokens=cache_min_tokens)
        self.organization_id = organization_id

    def _coerce(self, fault: Fault | str | None) -> AnthropicFault | None:
        return coerce(fault)

    def reset(self) -> None:
        super().reset()
        self.cache.entries.clear()

    # ----------------------------------------------------------------- app

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._wrap(self._messages))
        app.router.add_post("/v1/messages/count_tokens", self._wrap(self._count_tokens))
        app.router.add_get("/v1/models", self._wrap(self._list_models))
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, endpoint)

        return handler

    async def _handle(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        started = time.monotonic()
        raw = await request.read()
        ex = Exchange(request, parse_body(raw), random_id("req_011C", 20), started, AnthropicFault())
        self._record(request, raw, ex.body, ex.request_id, started)
        try:
            self._authenticate(request)
            version = request.headers.get("anthropic-version")
            if not version:
                raise errors.missing_version()
            if version not in VERSIONS:
                raise errors.bad_version(version)
            ex.fault = self._select_fault(request, raw)  # an AnthropicFault (fault_class)
            early = await self._apply_fault(ex)
            return early if early is not None else await endpoint(ex)
        except AnthropicHTTPError as e:
            return self._error(e, ex)
        except FaultSpecError as exc:
            return self._error(AnthropicHTTPError(400, f"bad {FAULT_HEADER}: {exc}"), ex)
        except ClientGone as gone:
            await self._note_disconnect(gone.at)
            return web.Response(status=499)

    def _authenticate(self, request: web.Request) -> None:
        key = request.headers.get("x-api-key")
        if key is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise errors.missing_api_key()
        if self.api_key is not None and key != self.api_key:
            raise errors.invalid_api_key()

    async def _apply_fault(self, ex: Exchange) -> web.StreamResponse | None:
        fault, watcher = ex.fault, Watcher(ex.request, self._stopping)
        if fault.slow_first_byte:
            await watcher.sleep(fault.slow_first_byte)
        if fault.error is not None:
            raise errors.named_error(fault.error)
        if fault.status is not None:
            raise errors.fault_error(fault.status, fault.retry_after)
        if fault.bad_json:
            if ex.wants_stream:
                body, ctype = b"event: message_start\ndata: " + BAD_JSON_BODY + b"\n\n", SSE_CONTENT_TYPE
            else:
                body, ctype = BAD_JSON_BODY, "application/json"
            return web.Response(body=body, headers={**self._headers(ex), "Content-Type": ctype})
        if not ex.wants_stream:
            return await stall_or_drop(fault, watcher)
        return None

    def _headers(self, ex: Exchange) -> dict[str, str]:
        return {
            "request-id": ex.request_id,
            "anthropic-organization-id": self.organization_id,
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
            "anthropic-ratelimit-input-tokens-limit": "2000000",
            "anthropic-ratelimit-input-tokens-remaining": "1999000",
            "anthropic-ratelimit-output-tokens-limit": "400000",
            "anthropic-ratelimit-output-tokens-remaining": "399000",
        }

    def _json(
        self, payload: Any, ex: Exchange, status: int = 200, extra: dict[str, str] | None = None
    ) -> web.Response:
        headers = {**self._headers(ex), **(extra or {}), "Content-Type": "application/json"}
        return web.Response(status=status, body=orjson.dumps(payload), headers=headers)

    def _error(self, e: AnthropicHTTPError, ex: Exchange) -> web.Response:
        return self._json(e.body(ex.request_id), ex, e.status, e.headers)

    def _body(self, ex: Exchange) -> Any:
        if ex.body is UNPARSEABLE:
            raise errors.not_json()
        return ex.body

    # ----------------------------------------------------------------- endpoints

    async def _messages(self, ex: Exchange) -> web.StreamResponse:
        req = validate(self._body(ex), ex.request.headers["anthropic-version"])
        if req.model not in self.models:
            raise errors.model_not_found(req.model)
        answer = generate(req, self.cache)
        if not req.stream:
            return self._json(message_body(answer), ex)
        events = stream_events(answer, words_per_chunk=self.words_per_chunk)
        fault = ex.fault
        if fault.stream_error_after is not None:
            failure = AnthropicHTTPError(fault.stream_error_status, "")
            failure.message = errors.FAULT_MESSAGES.get(failure.type, "error")
            events = events[: fault.stream_error_after]
            events.append(error_event(failure.type, failure.message, ex.request_id))
        headers = {**self._headers(ex), "cache-control": "no-cache"}
        return await self._run_stream(ex.request, fault, events, headers)

    async def _count_tokens(self, ex: Exchange) -> web.StreamResponse:
        body = self._body(ex)
        if isinstance(body, dict):
            if "max_tokens" in body:
                raise errors.extra_forbidden("max_tokens")
            body = {**body, "max_tokens": 1}
        req = validate(body, ex.request.headers["anthropic-version"])
        if req.model not in self.models:
            raise errors.model_not_found(req.model)
        return self._json({"input_tokens": count_input_tokens(req)}, ex)

    async def _list_models(self, ex: Exchange) -> web.StreamResponse:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models]  # fmt: skip
        first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
        return self._json({"data": data, "has_more": False, "first_id": first, "last_id": last}, ex)

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        ex = Exchange(request, None, random_id("req_011C", 20), time.monotonic(), AnthropicFault())
        return self._error(errors.unknown_route(request.method, request.path), ex)
