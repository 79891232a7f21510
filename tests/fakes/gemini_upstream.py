"""FakeGemini: a Gemini API (generativelanguage.googleapis.com) upstream for gateway tests.

In process::

    async with FakeGemini(api_key="AIza-upstream") as up:
        client = genai.Client(api_key="AIza-upstream",
                              http_options=types.HttpOptions(base_url=up.base_url, api_version="v1beta"))

Serves ``POST /{v1beta|v1}/models/{model}:generateContent``, ``:streamGenerateContent`` (``alt=sse``:
``data: {GenerateContentResponse}`` events, CRLF-framed as Google frames them; without it, a JSON
array), ``:embedContent``, ``:batchEmbedContents``, ``GET /{version}/models[/{model}]``. The key is
read from ``x-goog-api-key`` or the ``key`` query parameter. Requests are validated as Gemini
validates them (see _gemini_request) and answered deterministically (see _gemini_model).

The public interface mirrors FakeOpenAI: ``base_url`` (without the version: the value for a
provider's base_url), ``requests`` / ``requests_to()`` / ``last_request``, ``set_fault(spec, times=)``,
``clear_fault()``, ``reset()``, ``stream_disconnects``, ``wait_for_disconnect()``, and the same fault
specs (status=429;retry_after=N answers RESOURCE_EXHAUSTED with a RetryInfo of N seconds), from the
``x-fake-fault`` header, a ``[[fault:SPEC]]`` marker in the body, or the server-wide fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import _gemini_errors as errs
from tests.fakes._faults import FAULT_HEADER, Fault, FaultSpecError
from tests.fakes._gemini_model import embedding_values, generate, response_body, stream_bodies
from tests.fakes._gemini_request import fields, parse_generate
from tests.fakes._server import UNPARSEABLE, FakeServer, parse_body, stall_or_drop
from tests.fakes._text import count_tokens, random_id
from tests.fakes._transport import ClientGone, Watcher

DEFAULT_MODELS: tuple[str, ...] = (
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-3-pro-preview",
    "text-embedding-004",
    "gemini-embedding-001",
)
VERSIONS = ("v1beta", "v1", "v1alpha")
BAD_JSON_BODY = b'{"candidates": [{"content": {"parts": [{"text": "trunc'


def _is_embedding(model: str) -> bool:
    return "embedding" in model


class FakeGemini(FakeServer):
    def __init__(
        self,
        *,
        api_key: str | None = "AIza-fake-upstream-key",
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        chunk_delay: float = 0.0,
        words_per_chunk: int = 2,
        function_call_ids: bool = False,
        fault: Fault | str | None = None,
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
        # The Gemini API leaves FunctionCall.id empty; set this to answer with ids, as newer models do.
        self.function_call_ids = function_call_ids

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @property
    def base_url(self) -> str:
        # Google's base URL carries no version: clients add /v1beta (or /v1) themselves.
        return self.url

    # ----------------------------------------------------------------- dispatch

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = parse_body(raw, empty={})
        self._record(request, raw, body, random_id("", 16), time.monotonic())
        try:
            self._authenticate(request)
            fault = self._select_fault(request, raw)
            return await self._route(request, body, fault)
        except errs.GoogleHTTPError as e:
            return _json(e.body(), status=e.code, headers=e.headers)
        except FaultSpecError as e:
            return _json(errs.invalid(f"bad {FAULT_HEADER}: {e}").body(), status=400)
        except ClientGone as gone:
            await self._note_disconnect(gone.at)
            return web.Response(status=499)

    def _authenticate(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise errs.missing_key()
        if self.api_key is not None and key != self.api_key:
            raise errs.invalid_key()

    async def _route(self, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
        version, _, rest = request.path.lstrip("/").partition("/")
        if version not in VERSIONS or not rest.startswith("models"):
            raise errs.not_found_path(request.path)
        if request.method == "GET":
            if rest == "models":
                return _json({"models": [_model_json(m) for m in self.models]})
            model = rest[len("models/") :]
            if model not in self.models:
                raise errs.GoogleHTTPError(404, f"models/{model} is not found for API version {version}")
            return _json(_model_json(model))
        model, _, action = rest[len("models/") :].rpartition(":")
        if request.method != "POST" or not model:
            raise errs.not_found_path(request.path)
        if body is UNPARSEABLE:
            raise errs.unparseable()
        watcher = Watcher(request, self._stopping)
        if fault.slow_first_byte:
            await watcher.sleep(fault.slow_first_byte)
        if fault.error is not None:
            raise errs.named_error(fault.error)
        if fault.status is not None:
            raise errs.fault_error(fault.status, model=model, retry_after=fault.retry_after)
        if action in ("embedContent", "batchEmbedContents"):
            return _json(self._embed(model, action, body, version))
        if action not in ("generateContent", "streamGenerateContent"):
            raise errs.not_found_path(request.path)
        if model not in self.models or _is_embedding(model):
            raise errs.model_not_found(model, action, version)
        stream = action == "streamGenerateContent"
        if fault.bad_json:
            return self._bad_json(stream)
        if not stream and (early := await stall_or_drop(fault, watcher)) is not None:
            return early
        result = generate(parse_generate(body, model), call_ids=self.function_call_ids)
        if not stream:
            return _json(response_body(result))
        events = stream_bodies(result, words_per_chunk=self.words_per_chunk)
        if request.query.get("alt") != "sse":
            # Without alt=sse Gemini streams one JSON array of the same objects.
            return _json(events)
        return await self._stream(request, events, fault)

    def _bad_json(self, stream: bool) -> web.Response:
        if stream:
            return web.Response(
                body=b"data: " + BAD_JSON_BODY + b"\r\n\r\n", content_type="text/event-stream"
            )
        return web.Response(body=BAD_JSON_BODY, content_type="application/json")

    async def _stream(
        self, request: web.Request, events: list[dict[str, Any]], fault: Fault
    ) -> web.StreamResponse:
        frames = [b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events]
        return await self._run_stream(request, fault, frames, {"Content-Type": "text/event-stream"})

    def _embed(self, model: str, action: str, body: Any, version: str) -> dict[str, Any]:
        if model not in self.models or not _is_embedding(model):
            raise errs.model_not_found(model, action, version)
        if action == "embedContent":
            return {"embedding": {"values": self._embed_one(model, body, "")}}
        b = fields(body, "", {"requests"})
        requests = b.get("requests")
        if not isinstance(requests, list) or not requests:
            raise errs.GoogleHTTPError(
                400, "* BatchEmbedContentsRequest.requests: requests is not specified\n"
            )
        out = []
        for i, r in enumerate(requests):
            req = fields(
                r, f"requests[{i}]", {"model", "content", "taskType", "title", "outputDimensionality"}
            )
            if req.get("model") != f"models/{model}":
                raise errs.GoogleHTTPError(
                    400,
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model in each request must be "
                    f"the model of the batch (models/{model}).\n",
                )
            out.append({"values": self._embed_one(model, r, f"requests[{i}]")})
        return {"embeddings": out}

    @staticmethod
    def _embed_one(model: str, body: Any, path: str) -> list[float]:
        known = {"model", "content", "taskType", "title", "outputDimensionality"}
        req = fields(body, path, known)
        content = fields(req.get("content"), f"{path}.content".lstrip("."), {"role", "parts"})
        texts = [p.get("text", "") for p in content.get("parts") or [] if isinstance(p, dict)]
        text = " ".join(t for t in texts if isinstance(t, str))
        if not count_tokens(text):
            raise errs.field_error(f"{path}.content".lstrip("."), "content must not be empty")
        dims = req.get("outputDimensionality")
        return embedding_values(model, text, dims if isinstance(dims, int) else None)


def _json(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(payload),
        headers={**(headers or {}), "Content-Type": "application/json; charset=UTF-8"},
    )


def _model_json(model: str) -> dict[str, Any]:
    embedding = _is_embedding(model)
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "description": f"The fake {model}.",
        "inputTokenLimit": 2048 if embedding else 1048576,
        "outputTokenLimit": 1 if embedding else 65536,
        "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]
        if embedding
        else ["generateContent", "countTokens"],
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
    }
