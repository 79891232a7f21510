"""What the fake upstreams share: lifecycle, request recording, fault selection and the bookkeeping
of streams and disconnects.

FakeOpenAI, FakeAnthropic and FakeGemini subclass ``FakeServer`` and add their own app
(``_build_app``), authentication, endpoints and wire format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from tests.fakes._faults import FAULT_HEADER, FAULT_MARKER, Fault, coerce_fault
from tests.fakes._transport import ClientGone, EventStream, Watcher

UNPARSEABLE = object()  # the parsed body of a request whose body is not JSON


def parse_body(raw: bytes, empty: Any = None) -> Any:
    """The JSON body, ``empty`` when there is none, UNPARSEABLE when it is not JSON."""
    if not raw:
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return UNPARSEABLE


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (`json` is None when the body was not JSON)."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any
    request_id: str
    received_at: float


async def stall_or_drop(fault: Fault, watcher: Watcher) -> web.Response | None:
    """For an answer that is not a stream, before any byte: ``stall_after`` holds the connection,
    ``drop_after`` drops it (499 is only what the fake logs); None when neither is set."""
    if fault.stall_after is not None:
        await watcher.hold()
        return web.Response(status=499)
    if fault.drop_after is not None:
        watcher.abort()
        return web.Response(status=499)
    return None


class FakeServer:
    """An aiohttp server on ``host:port`` (0: any free port) that records every request.

    Faults: ``fault`` / ``set_fault()`` server-wide, the ``x-fake-fault`` header or a
    ``[[fault:SPEC]]`` marker anywhere in the body per request (header > marker > server-wide).
    Observations: ``requests``, ``stream_disconnects`` (time.monotonic() of each client that left a
    stream early), ``active_streams``, ``wait_for_disconnect()``.
    """

    fault_class: type[Fault] = Fault  # what a spec parses into
    # Set before start() to serve https (tests/unit/test_proxy.py makes a throwaway CA for it).
    ssl_context: ssl.SSLContext | None = None

    def __init__(
        self,
        *,
        api_key: str | None,
        host: str,
        port: int,
        models: Iterable[str],
        chunk_delay: float,
        words_per_chunk: int,
        fault: Fault | str | None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.models: list[str] = list(models)
        self.chunk_delay = chunk_delay
        self.words_per_chunk = words_per_chunk
        self.requests: list[RecordedRequest] = []
        self.stream_disconnects: list[float] = []
        self.active_streams = 0
        self._fault = self._coerce(fault)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._disconnected = asyncio.Condition()

    def _build_app(self) -> web.Application:
        raise NotImplementedError

    def _coerce(self, fault: Fault | str | None) -> Fault | None:
        return coerce_fault(fault)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._stopping.clear()
        self._runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port, ssl_context=self.ssl_context).start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.url

    # ----------------------------------------------------------------- controls

    @property
    def fault(self) -> Fault | None:
        return self._fault

    @fault.setter
    def fault(self, value: Fault | str | None) -> None:
        self._fault = self._coerce(value)

    def set_fault(self, spec: Fault | str, *, times: int | None = None) -> None:
        """Apply `spec` to every following request (or to the next `times` requests)."""
        fault = self._coerce(spec)
        assert fault is not None
        self._fault = fault if times is None else dataclasses.replace(fault, times=times)

    def clear_fault(self) -> None:
        self._fault = None

    def reset(self) -> None:
        """Forget recorded requests and disconnects, and clear the fault."""
        self.requests.clear()
        self.stream_disconnects.clear()
        self._fault = None

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for_disconnect(self, count: int = 1, *, within: float = 5.0) -> float:
        """Wait (up to `within` s) until `count` disconnects are recorded; return the count-th's time."""
        async with asyncio.timeout(within), self._disconnected:
            await self._disconnected.wait_for(lambda: len(self.stream_disconnects) >= count)
        return self.stream_disconnects[count - 1]

    # ----------------------------------------------------------------- plumbing

    def _record(self, request: web.Request, raw: bytes, body: Any, request_id: str, at: float) -> None:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDictProxy(request.headers.copy()),
                body=raw,
                json=None if body is UNPARSEABLE else body,
                request_id=request_id,
                received_at=at,
            )
        )

    def _select_fault(self, request: web.Request, raw: bytes) -> Fault:
        header = request.headers.get(FAULT_HEADER)
        if header is not None:
            return self.fault_class.parse(header)
        marker = FAULT_MARKER.search(raw.decode("utf-8", errors="replace"))
        if marker is not None:
            return self.fault_class.parse(marker.group(1))
        fault = self._fault
        if fault is None:
            return self.fault_class()
        if fault.times is not None:
            self._fault = None if fault.times <= 1 else dataclasses.replace(fault, times=fault.times - 1)
        return fault

    async def _note_disconnect(self, at: float) -> None:
        async with self._disconnected:
            self.stream_disconnects.append(at)
            self._disconnected.notify_all()

    async def _run_stream(
        self, request: web.Request, fault: Fault, events: Sequence[bytes], headers: Mapping[str, str]
    ) -> web.StreamResponse:
        """Send ``events`` at the fault's pace, counted in ``active_streams``; a client that leaves
        is recorded."""
        stream = EventStream(
            request,
            Watcher(request, self._stopping),
            delay=self.chunk_delay if fault.chunk_delay is None else fault.chunk_delay,
            stall_after=fault.stall_after,
            drop_after=fault.drop_after,
        )
        self.active_streams += 1
        try:
            return await stream.run(events, headers)
        except ClientGone as gone:
            await self._note_disconnect(gone.at)
            return stream.response
        finally:
            self.active_streams -= 1
