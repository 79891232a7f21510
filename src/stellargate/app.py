"""The ASGI application: routes, lifespan, and the request envelope. No business logic here."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import aclosing
from typing import Any

import orjson

from stellargate.admin.api import AdminAPI
from stellargate.admin.audit_api import AuditAPI
from stellargate.admin.reload_api import ReloadAPI
from stellargate.admin.webhooks_api import WebhooksAPI
from stellargate.audit import auth_failure, watch_fail_open
from stellargate.dialects.anthropic import AnthropicDialect
from stellargate.dialects.base import Dialect
from stellargate.dialects.gemini import GeminiDialect
from stellargate.dialects.openai import OpenAIDialect
from stellargate.dialects.tasks import TasksDialect
from stellargate.errors import GatewayError, MethodNotAllowed, NotFound
from stellargate.gctune import tune_gc
from stellargate.logs import configure_logging, request_id_var
from stellargate.openapi import OpenAPIRoute
from stellargate.reload import Reloader
from stellargate.routes.anthropic_api import AnthropicRoutes
from stellargate.routes.gemini_api import GeminiRoutes
from stellargate.routes.openai_api import OpenAIRoutes
from stellargate.routes.openai_more import OpenAIMoreRoutes
from stellargate.routes.ops import OpsRoutes
from stellargate.routes.tasks_api import TaskRoutes
from stellargate.runtime import Runtime
from stellargate.settings import ENV_CONFIG, Settings, load_settings
from stellargate.tracing import Tracing, start_tracing
from stellargate.web import (
    ClientGone,
    Receive,
    Reply,
    Request,
    Result,
    Router,
    Scope,
    Send,
    json_reply,
)
from stellargate.webhook_events import start_webhooks

log = logging.getLogger("stellargate")


class _Watch:
    """Cancels the request's task when the client goes away before the response is complete."""

    __slots__ = ("done", "gone", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.done = False
        self.gone = False

    def __call__(self, fut: asyncio.Future[Any]) -> None:
        if self.done or fut.cancelled() or fut.exception() is not None:
            return
        if fut.result().get("type") == "http.disconnect":
            self.gone = True
            self.task.cancel()


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rt: Runtime | None = None
        self.reloader: Reloader | None = None
        self.tracing: Tracing | None = None
        self.router = Router()
        self.dialects: dict[str, Dialect] = {"openai": OpenAIDialect(), "anthropic": AnthropicDialect()}
        self.dialects["tasks"] = TasksDialect()
        self.dialects["gemini"] = GeminiDialect()

    # -- lifespan ---------------------------------------------------------------------------

    async def startup(self) -> None:
        self.rt = await Runtime.start(self.settings)
        hooks = start_webhooks(self.rt)  # before the routes build their chains: it observes usage
        if self.rt.limits is not None:
            self.rt.tasks.append(asyncio.create_task(watch_fail_open(self.rt.audit, self.rt.limits)))
        self.tracing = start_tracing(self.settings.tracing)  # None unless tracing.enabled
        if self.tracing is not None:
            self.rt.usage_observers.append(self.tracing)
        self.router = Router()
        self.router.add("GET", "/healthz", self.healthz)
        self.router.add("GET", "/readyz", self.readyz)
        openai, anthropic, gemini = OpenAIRoutes(self.rt), AnthropicRoutes(self.rt), GeminiRoutes(self.rt)
        # GET /v1/models is shared by three SDKs; each dialect answers the requests it claims.
        openai.add_models_view(anthropic)
        openai.add_models_view(gemini)
        for routes in (openai, OpenAIMoreRoutes(self.rt), TaskRoutes(self.rt), anthropic, gemini):
            routes.register(self.router)
        admin = AdminAPI(self.rt)
        admin.register(self.router)
        self.reloader = Reloader(self.rt)
        self.reloader.start()  # SIGHUP, and reloads asked of other workers and replicas
        ReloadAPI(admin, self.reloader).register(self.router)
        WebhooksAPI(admin, hooks).register(self.router)
        AuditAPI(self.rt).register(self.router)
        OpsRoutes(self.rt).register(self.router)
        OpenAPIRoute(list(self.rt.models.models)).register(self.router)
        tune_gc()  # last: what start-up built lives as long as the process

    async def shutdown(self) -> None:
        if self.reloader is not None:
            self.reloader.close()
            self.reloader = None
        if self.rt is not None:
            await self.rt.stop()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # flushes the last spans
            self.tracing = None
            self.rt = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.error("start-up failed: %s", e)
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = Request(scope, receive)
        request_id_var.set(req.request_id)  # every log line written while serving it carries it
        path = req.path
        if path.startswith("/api/v1/"):
            path = path[4:]
        route, params, exists = self.router.match(req.method, path)
        dialect = self.dialects["openai"] if route is None else self.dialects[route.dialect]
        watch: _Watch | None = None
        try:
            if route is None:
                if exists:
                    raise MethodNotAllowed(f"Method {req.method} is not allowed on {req.path}.")
                raise NotFound(f"Unknown path {req.path}.", code="unknown_route")
            req.params = params
            if req.method == "POST":
                task = asyncio.current_task()
                assert task is not None
                watch = _Watch(task)
                await self._read_then_watch(req, watch)
            result = await route.handler(req)
            await self._send(send, req, result, watch)
        except GatewayError as e:
            if watch is not None:
                watch.done = True
            status, headers, body = dialect.render_error(e, req.request_id)
            if status == 401 and self.rt is not None:
                auth_failure(self.rt.audit, req, dialect, e.code)
            if e.upstream_body is not None:
                log.info(
                    "upstream error %s on %s: %s", e.upstream_status, req.request_id, e.upstream_body[:2000]
                )
            await self._send(
                send,
                req,
                Reply(status, body, headers=[(k.encode(), v.encode()) for k, v in headers.items()]),
                None,
            )
        except ClientGone:
            return
        except asyncio.CancelledError:
            if watch is not None and watch.gone:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return
            raise
        except Exception:
            # A bug, not the caller's fault: log it with its traceback, answer without one.
            log.exception("unhandled error on %s %s (%s)", req.method, req.path, req.request_id)
            err = GatewayError("The gateway hit an internal error; it has been logged.")
            status, headers, body = dialect.render_error(err, req.request_id)
            try:
                await self._send(send, req, Reply(status, body), None)
            except Exception:
                pass

    async def _read_then_watch(self, req: Request, watch: _Watch) -> None:
        """Read the body, then listen for the disconnect while the handler runs."""
        receive = req.receive
        await req.read_body(self.settings.server.max_body_bytes)
        # After the body, the server's receive() returns only when the client disconnects or the
        # response is complete; the watch tells the two apart.
        fut = asyncio.ensure_future(receive())
        fut.add_done_callback(watch)

    async def _send(self, send: Send, req: Request, result: Result, watch: _Watch | None) -> None:
        headers = [(b"content-type", result.content_type), (b"x-request-id", req.request_id.encode())]
        headers.extend(result.headers)
        if isinstance(result, Reply):
            if watch is not None:
                watch.done = True
            headers.append((b"content-length", str(len(result.body)).encode()))
            await send({"type": "http.response.start", "status": result.status, "headers": headers})
            await send({"type": "http.response.body", "body": result.body})
            return
        headers.append((b"cache-control", b"no-cache"))
        completed = False
        try:
            await send({"type": "http.response.start", "status": result.status, "headers": headers})
            async with aclosing(result.chunks) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if result.first_chunk_at is None:
                        result.first_chunk_at = time.perf_counter()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if watch is not None:
                watch.done = True
            await send({"type": "http.response.body", "body": b""})
            completed = True
        finally:
            for cb in result.on_done:
                cb(completed)

    # -- health -----------------------------------------------------------------------------

    async def healthz(self, req: Request) -> Result:
        return json_reply({"status": "ok"})

    async def readyz(self, req: Request) -> Result:
        assert self.rt is not None
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.rt.db.ping(), 2)
            checks["database"] = "ok"
            checks["migrations"] = "current" if await self.rt.db.migrations_current() else "pending"
        except Exception as e:
            checks["database"] = f"unreachable: {type(e).__name__}"
        ready = checks.get("database") == "ok" and checks.get("migrations") == "current"
        return Reply(
            200 if ready else 503,
            orjson.dumps({"status": "ready" if ready else "not_ready", "checks": checks}),
        )


def app_from_env() -> Gateway:
    """Factory for uvicorn's multi-worker mode: each worker process builds its own app."""
    settings = load_settings(os.environ.get(ENV_CONFIG) or None)
    configure_logging(settings.log_level, settings.log_format)  # a spawned worker has none yet
    return Gateway(settings)


def build_app(settings: Settings) -> Gateway:
    return Gateway(settings)
