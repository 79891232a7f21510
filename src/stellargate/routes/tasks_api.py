"""The task API: ``GET /``, ``GET /llm/providers`` and the ``/llm/...`` task endpoints.

The tasks run the chat stages and the chat ``Invoker`` unchanged; only the dialect differs (one
per task). Their ledger records have endpoint ``chat`` (the scope they need), dialect ``tasks`` and
the task in ``meta.task``. Every answer here, errors included, is in the task API's shape.
"""

from __future__ import annotations

from stellargate.dialects.tasks import TasksDialect
from stellargate.errors import InvalidRequest
from stellargate.pipeline.auth import check_scope
from stellargate.pipeline.chains import model_chain
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.task_auth import TaskAuth, TaskAuthStage
from stellargate.runtime import Runtime
from stellargate.web import Handler, Request, Result, Router, json_reply

DIALECT = "tasks"


async def _structured_output(ctx: Context, call_next: Next) -> Result:
    """Classification is constrained by a JSON schema: refuse a model that cannot take one rather
    than let it answer free text."""
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and not target.adapter.capabilities.json_schema:
        raise InvalidRequest(
            f"The model '{req.model}' cannot be constrained to a JSON schema, which this task needs.",
            param="model",
            code="model_not_supported",
        )
    return await call_next(ctx)


class TaskRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.auth = TaskAuth(rt.keys, rt.settings.task_api_secret_token)
        self.pipeline = model_chain(rt, auth=TaskAuthStage(self.auth), checks=[_structured_output])
        self._limit = rt.settings.server.max_body_bytes
        self._info = TasksDialect()  # reads the key of the two informational endpoints

    def register(self, router: Router) -> None:
        router.add("GET", "/", self.status, dialect=DIALECT)
        router.add("GET", "/llm/providers", self.providers, dialect=DIALECT)
        router.add("POST", "/llm/generation", self._task(TasksDialect("generation")), dialect=DIALECT)
        router.add("POST", "/llm/classification", self._task(TasksDialect("classification")), dialect=DIALECT)
        router.add("POST", "/llm/summarization", self._task(TasksDialect("summarization")), dialect=DIALECT)
        router.add(
            "POST",
            "/llm/generation/stream",
            self._task(TasksDialect("generation", stream=True)),
            dialect=DIALECT,
        )

    def _task(self, dialect: TasksDialect) -> Handler:
        async def handle(req: Request) -> Result:
            await req.read_body(self._limit)
            ctx = Context(http=req, endpoint="chat", dialect=dialect, meta={"task": dialect.task})
            return await self.pipeline(ctx)

        return handle

    async def status(self, req: Request) -> Result:
        await self.auth.authenticate(self._info.api_key(req))
        names = [n.upper() for n in self.rt.models.providers]
        return json_reply({"status": "success", "api_status": "up", "providers": names})

    async def providers(self, req: Request) -> Result:
        key = await self.auth.authenticate(self._info.api_key(req))
        check_scope(key, "models")
        return json_reply({"status": "success", "providers": list(self.rt.models.providers)})
