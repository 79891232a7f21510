"""FakeOpenAI: an OpenAI-compatible upstream for gateway tests, faithful to OpenAI's wire format.

In process::

    async with FakeOpenAI(api_key="sk-upstream") as up:
        client = openai.AsyncOpenAI(base_url=up.base_url, api_key="sk-upstream")

Out of process::

    python -m tests.fakes.openai_upstream --port 0 --api-key sk-upstream   # prints "READY <port>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import _chat, _completions, _errors
from tests.fakes._catalog import DEFAULT_MODELS, model_list, model_object
from tests.fakes._chat_request import parse_chat_request
from tests.fakes._embeddings import embeddings_body
from tests.fakes._faults import FAULT_HEADER, Fault, FaultSpecError
from tests.fakes._images import images_body
from tests.fakes._server import FakeServer, parse_body, stall_or_drop
from tests.fakes._server import RecordedRequest as RecordedRequest  # re-exported: tests import it from here
from tests.fakes._text import random_id
from tests.fakes._transport import (
    DONE_EVENT,
    JSON_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    ClientGone,
    Watcher,
    error_response,
    json_response,
    openai_headers,
    sse_event,
)

BAD_JSON_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass
class Exchange:
    """One request in flight through the fake's pipeline."""

    request: web.Request
    body: Any
    request_id: str
    started: float
    fault: Fault = field(default_factory=Fault)

    @property
    def json(self) -> dict[str, Any]:
        """The JSON object body ({} when empty), or OpenAI's 400 for a body that is not a JSON object."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise _errors.unparseable_json()
        return self.body

    @property
    def wants_stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


Endpoint = Callable[[Exchange], Awaitable[web.StreamResponse]]


class FakeOpenAI(FakeServer):
    """An aiohttp server speaking OpenAI's API (chat, legacy completions, embeddings, images, models).

    `api_key=None` accepts any bearer key. `models` are served (kind inferred from the id, see _catalog).
    `created` pins every `created` timestamp. Faults: `fault`/`set_fault()` server-wide, the `x-fake-fault`
    header or a `[[fault:SPEC]]` marker anywhere in the body per request (header > marker > server-wide).
    Observations: `requests`, `stream_disconnects` (time.monotonic() of each client that left early),
    `active_streams`, `wait_for_disconnect()`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "sk-upstream",
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        chunk_delay: float = 0.0,
        words_per_chunk: int = 2,
        fault: Fault | str | None = None,
        strict_params: bool = True,
        created: int | None = None,
        system_fingerprint: str = "fp_f4ke0a1b2c",
        organization: str = "org-fake",
        prompt_scale: float = 1.0,
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
        self.strict_params = strict_params
        self.created = created
        self.system_fingerprint = system_fingerprint
        self.organization = organization
        # Chat prompt tokens reported per token of the fake's own count (a word): above 1 it plays
        # a provider whose tokenizer counts more than the gateway's estimate does.
        self.prompt_scale = prompt_scale
        self._images: dict[str, bytes] = {}

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # ----------------------------------------------------------------- app

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._wrap(self._chat))
        app.router.add_post("/v1/completions", self._wrap(self._completions))
        app.router.add_post("/v1/embeddings", self._wrap(self._embeddings))
        app.router.add_post("/v1/images/generations", self._wrap(self._images_generate))
        app.router.add_get("/v1/models", self._wrap(self._list_models))
        app.router.add_get("/v1/models/{model}", self._wrap(self._get_model))
        app.router.add_get("/_fake/images/{name}", self._serve_image)
        app.router.add_get("/_fake/state", self._state)
        app.router.add_put("/_fake/fault", self._put_fault)
        app.router.add_route("*", "/{tail:.*}", self._invalid_url)
        return app

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, endpoint)

        return handler

    async def _handle(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        started = time.monotonic()
        raw = await request.read()
        exchange = Exchange(request, parse_body(raw), random_id("req_", 32), started)
        self._record(request, raw, exchange.body, exchange.request_id, started)
        try:
            self._authenticate(request)
            exchange.fault = self._select_fault(request, raw)
            early = await self._apply_fault(exchange, Watcher(request, self._stopping))
            return early if early is not None else await endpoint(exchange)
        except _errors.OpenAIHTTPError as error:
            return error_response(error, self._headers(exchange))
        except FaultSpecError as exc:
            bad_spec = _errors.OpenAIHTTPError(400, f"bad {FAULT_HEADER}: {exc}", type_="fake_fault_error")
            return error_response(bad_spec, self._headers(exchange))
        except ClientGone as gone:
            await self._note_disconnect(gone.at)
            return web.Response(status=499)

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _errors.missing_api_key()
        if self.api_key is not None and key != self.api_key:
            raise _errors.incorrect_api_key(key)

    async def _apply_fault(self, exchange: Exchange, watcher: Watcher) -> web.StreamResponse | None:
        """Faults that act before the endpoint runs; None means "carry on"."""
        fault = exchange.fault
        if fault.slow_first_byte:
            await watcher.sleep(fault.slow_first_byte)
        if fault.error is not None:
            raise _errors.named_error(fault.error)
        if fault.status is not None:
            model = exchange.body.get("model", "gpt-4o") if isinstance(exchange.body, dict) else "gpt-4o"
            raise _errors.fault_error(
                fault.status, model=str(model), request_id=exchange.request_id, retry_after=fault.retry_after
            )
        if fault.bad_json:
            return self._bad_json(exchange)
        if not exchange.wants_stream:
            return await stall_or_drop(fault, watcher)
        return None

    def _bad_json(self, exchange: Exchange) -> web.Response:
        """A 200 whose body (or first SSE event) is truncated JSON."""
        if exchange.wants_stream:
            body, content_type = b"data: " + BAD_JSON_BODY + b"\n\n", SSE_CONTENT_TYPE
        else:
            body, content_type = BAD_JSON_BODY, JSON_CONTENT_TYPE
        return web.Response(body=body, headers={**self._headers(exchange), "Content-Type": content_type})

    def _headers(self, exchange: Exchange) -> dict[str, str]:
        return openai_headers(exchange.request_id, exchange.started, self.organization)

    def _now(self) -> int:
        return self.created if self.created is not None else int(time.time())

    async def _stream(self, exchange: Exchange, chunks: list[dict[str, Any]]) -> web.StreamResponse:
        events = [sse_event(chunk) for chunk in chunks] + [DONE_EVENT]
        return await self._run_stream(exchange.request, exchange.fault, events, self._headers(exchange))

    # ----------------------------------------------------------------- endpoints

    async def _chat(self, exchange: Exchange) -> web.StreamResponse:
        req = parse_chat_request(exchange.json, self.models, strict_params=self.strict_params)
        result = _chat.generate(req, created=self._now(), system_fingerprint=self.system_fingerprint)
        if self.prompt_scale != 1.0:
            u = result.usage
            u["prompt_tokens"] = math.ceil(u["prompt_tokens"] * self.prompt_scale)
            u["total_tokens"] = u["prompt_tokens"] + u["completion_tokens"]
        if not req.stream:
            return json_response(_chat.completion_body(result), self._headers(exchange))
        chunks = _chat.chunk_bodies(
            result,
            words_per_chunk=self.words_per_chunk,
            include_usage=req.include_usage,
            obfuscate=req.include_obfuscation,
        )
        return await self._stream(exchange, chunks)

    async def _completions(self, exchange: Exchange) -> web.StreamResponse:
        result = _completions.generate_completion(
            exchange.json,
            self.models,
            created=self._now(),
            system_fingerprint=self.system_fingerprint,
            strict_params=self.strict_params,
        )
        if not result.stream:
            return json_response(_completions.completion_body(result), self._headers(exchange))
        chunks = _completions.completion_chunks(result, words_per_chunk=self.words_per_chunk)
        return await self._stream(exchange, chunks)

    async def _embeddings(self, exchange: Exchange) -> web.StreamResponse:
        body = embeddings_body(exchange.json, self.models, strict_params=self.strict_params)
        return json_response(body, self._headers(exchange))

    async def _images_generate(self, exchange: Exchange) -> web.StreamResponse:
        body, files = images_body(
            exchange.json,
            self.models,
            created=self._now(),
            image_url_base=f"{self.url}/_fake/images",
            strict_params=self.strict_params,
        )
        self._images.update(files)
        return json_response(body, self._headers(exchange))

    async def _list_models(self, exchange: Exchange) -> web.StreamResponse:
        return json_response(model_list(self.models), self._headers(exchange))

    async def _get_model(self, exchange: Exchange) -> web.StreamResponse:
        model = exchange.request.match_info["model"]
        if model not in self.models:
            raise _errors.model_lookup_not_found(model)
        return json_response(model_object(model), self._headers(exchange))

    # ----------------------------------------------------------------- fake-only routes

    async def _serve_image(self, request: web.Request) -> web.StreamResponse:
        png = self._images.get(request.match_info["name"])
        if png is None:
            return web.Response(status=404, text="BlobNotFound")
        return web.Response(body=png, content_type="image/png")

    async def _state(self, request: web.Request) -> web.StreamResponse:
        state = {
            "requests": [{"method": r.method, "path": r.path, "json": r.json} for r in self.requests],
            "stream_disconnects": self.stream_disconnects,
            "active_streams": self.active_streams,
            "fault": dataclasses.asdict(self._fault) if self._fault else None,
        }
        return web.Response(body=orjson.dumps(state), content_type="application/json")

    async def _put_fault(self, request: web.Request) -> web.StreamResponse:
        """Body: a spec as plain text, or JSON `{"fault": spec}`; empty / null clears the fault."""
        spec: Any = (await request.text()).strip()
        if spec.startswith("{"):
            spec = orjson.loads(spec).get("fault")
        try:
            self.fault = spec or None
        except FaultSpecError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(status=204)

    async def _invalid_url(self, request: web.Request) -> web.StreamResponse:
        error = _errors.invalid_url(request.method, request.path)
        return error_response(
            error, openai_headers(random_id("req_", 32), time.monotonic(), self.organization)
        )


# --------------------------------------------------------------------- out-of-process entry point


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fake OpenAI upstream for StellarGate tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-upstream", help="the key clients must send; '' accepts any")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model ids")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--fault", default=None, help="server-wide fault spec, e.g. 'status=503'")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        api_key=args.api_key or None,
        host=args.host,
        port=args.port,
        models=[m for m in args.models.split(",") if m],
        chunk_delay=args.chunk_delay,
        fault=args.fault,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"READY {fake.port}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
