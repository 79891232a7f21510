"""Bare ASGI plumbing: the request, the two kinds of reply, and a router.

No web framework sits on the hot path: a framework's per-request machinery costs more CPU than
the whole of what a gateway must do per request.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from stellargate.errors import InvalidJSON, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"
_RID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class _RequestIds:
    """Unique ids without a syscall each: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = "req_" + os.urandom(6).hex()
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._n):012x}"


new_request_id = _RequestIds()


class Request:
    __slots__ = (
        "_read",
        "arrival",
        "body",
        "headers",
        "method",
        "params",
        "path",
        "query_string",
        "receive",
        "request_id",
        "scope",
        "t0",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.params: dict[str, str] = {}
        self.body = b""
        self._read = False
        self.t0 = time.perf_counter()
        self.arrival = time.time()
        rid = self.headers.get("x-request-id")
        self.request_id = rid if rid is not None and _RID_OK.match(rid) else new_request_id()

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string.decode("latin-1")))

    async def read_body(self, limit: int) -> bytes:
        if self._read:
            return self.body
        cl = self.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > limit:
            raise PayloadTooLarge(f"The request body is larger than the {limit // (1024 * 1024)} MiB limit.")
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"The request body is larger than the {limit // (1024 * 1024)} MiB limit."
                )
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._read = True
        return self.body

    def json(self) -> Any:
        if not self.body:
            raise InvalidJSON("The request body is empty; expected a JSON object.")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as e:
            raise InvalidJSON(f"The request body is not valid JSON: {e.args[0] if e.args else e}.") from None


class ClientGone(Exception):
    """The client disconnected before the request was read."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class StreamReply:
    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: bytes = SSE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Set by the server when the first chunk goes out; callbacks run once the stream has ended,
    # told whether it reached its end (False: the client went away or the server failed).
    first_chunk_at: float | None = None
    on_done: list[Callable[[bool], None]] = field(default_factory=list)


Result = Reply | StreamReply
Handler = Callable[[Request], Awaitable[Result]]


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(obj))


@dataclass(slots=True)
class Route:
    methods: frozenset[str]
    handler: Handler
    dialect: str  # whose error shape this route answers in
    pattern: re.Pattern[str] | None = None


class Router:
    """Exact paths by dict lookup (the hot routes); ``{param}`` paths by regex, tried in order."""

    def __init__(self) -> None:
        self._exact: dict[str, list[Route]] = {}
        self._patterns: list[Route] = []

    def add(self, methods: str, path: str, handler: Handler, dialect: str = "openai") -> None:
        ms = frozenset(methods.split(","))
        if "{" in path:
            rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
            self._patterns.append(Route(ms, handler, dialect, rx))
        else:
            self._exact.setdefault(path, []).append(Route(ms, handler, dialect))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path exists under another method)."""
        routes = self._exact.get(path)
        if routes is not None:
            for r in routes:
                if method in r.methods:
                    return r, {}, True
            return None, {}, True
        found = False
        for r in self._patterns:
            assert r.pattern is not None
            m = r.pattern.match(path)
            if m:
                found = True
                if method in r.methods:
                    return r, m.groupdict(), True
        return None, {}, found
