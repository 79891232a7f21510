"""Wire-level helpers: OpenAI's response headers, client-disconnect watching, and the SSE writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._errors import OpenAIHTTPError

POLL_SECONDS = 0.02
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
DONE_EVENT = b"data: [DONE]\n\n"


class ClientGone(Exception):
    """The client closed the connection while the fake was still answering."""

    def __init__(self) -> None:
        super().__init__("client disconnected")
        self.at = time.monotonic()


def openai_headers(request_id: str, started: float, organization: str) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
        "openai-organization": organization,
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "29999000",
        "x-ratelimit-reset-tokens": "2ms",
    }


def json_response(payload: Any, headers: Mapping[str, str], *, status: int = 200) -> web.Response:
    content_type = JSON_CONTENT_TYPE if status < 400 else JSON_CONTENT_TYPE + "; charset=utf-8"
    return web.Response(
        status=status, body=orjson.dumps(payload), headers={**headers, "Content-Type": content_type}
    )


def error_response(error: OpenAIHTTPError, headers: Mapping[str, str]) -> web.Response:
    return json_response(error.body(), {**headers, **error.headers}, status=error.status)


def sse_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Watcher:
    """Polls the connection so a departed client is noticed within POLL_SECONDS."""

    def __init__(self, request: web.BaseRequest, stopping: asyncio.Event) -> None:
        self._request = request
        self._stopping = stopping

    def client_gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, raising ClientGone as soon as the client leaves; returns early if the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self.client_gone():
                raise ClientGone()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping:
                return
            await asyncio.sleep(min(POLL_SECONDS, remaining))

    async def hold(self) -> None:
        """Keep the connection open, silent, until the client leaves (ClientGone) or the server stops."""
        while not self.stopping:
            await self.sleep(POLL_SECONDS * 5)
        self.abort()

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


class EventStream:
    """Writes SSE events one write each, honouring chunk delay and the stall/drop faults."""

    def __init__(
        self,
        request: web.BaseRequest,
        watcher: Watcher,
        *,
        delay: float,
        stall_after: int | None,
        drop_after: int | None,
    ) -> None:
        self._request = request
        self._watcher = watcher
        self._delay = delay
        self._stall_after = stall_after
        self._drop_after = drop_after
        self.response = web.StreamResponse(status=200)

    async def run(self, events: Sequence[bytes], headers: Mapping[str, str]) -> web.StreamResponse:
        response = self.response
        response.headers.update({**headers, "Content-Type": SSE_CONTENT_TYPE})
        await response.prepare(self._request)
        for position in range(len(events) + 1):
            if position == self._stall_after:
                await self._watcher.hold()
                return response
            if position == self._drop_after:
                self._watcher.abort()
                return response
            if position == len(events):
                break
            if position and self._delay:
                await self._watcher.sleep(self._delay)
            await self._write(response, events[position])
        await response.write_eof()
        return response

    async def _write(self, response: web.StreamResponse, event: bytes) -> None:
        if self._watcher.client_gone():
            raise ClientGone()
        try:
            await response.write(event)
        except ConnectionError as exc:
            raise ClientGone() from exc
