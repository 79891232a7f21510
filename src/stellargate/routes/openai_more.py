"""The OpenAI endpoints beyond chat: legacy completions, embeddings, image generation.

Each runs the same stages as chat (auth with its own scope, usage, routing), so each call leaves
one usage record. Errors are OpenAI's shape: these routes answer in the "openai" dialect.
"""

from __future__ import annotations

from stellargate.dialects.openai import OpenAIDialect
from stellargate.dialects.openai_completions import OpenAICompletionsDialect
from stellargate.dialects.openai_extra import (
    parse_embeddings_request,
    parse_images_request,
    render_embeddings,
    render_images,
)
from stellargate.pipeline.chains import model_chain
from stellargate.pipeline.context import Context
from stellargate.pipeline.invoke import Invoker
from stellargate.pipeline.nonchat import EmbeddingsInvoker, ImagesInvoker, completions_identity, parse_stage
from stellargate.runtime import Runtime
from stellargate.web import Request, Result, Router


class OpenAIMoreRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.dialect = OpenAIDialect()
        self.completions_dialect = OpenAICompletionsDialect()
        self.completions_pipeline = model_chain(
            rt, terminal=Invoker(rt.transport, identity=completions_identity)
        )
        self.embeddings_pipeline = model_chain(
            rt,
            parse=parse_stage(parse_embeddings_request),
            terminal=EmbeddingsInvoker(rt.transport, render_embeddings),
        )
        self.images_pipeline = model_chain(
            rt,
            parse=parse_stage(parse_images_request),
            terminal=ImagesInvoker(rt.transport, render_images),
        )
        self._limit = rt.settings.server.max_body_bytes

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/completions", self.completions)
        router.add("POST", "/v1/embeddings", self.embeddings)
        router.add("POST", "/v1/images/generations", self.images)

    async def completions(self, req: Request) -> Result:
        await req.read_body(self._limit)
        ctx = Context(http=req, endpoint="completions", dialect=self.completions_dialect)
        return await self.completions_pipeline(ctx)

    async def embeddings(self, req: Request) -> Result:
        await req.read_body(self._limit)
        return await self.embeddings_pipeline(Context(http=req, endpoint="embeddings", dialect=self.dialect))

    async def images(self, req: Request) -> Result:
        await req.read_body(self._limit)
        return await self.images_pipeline(Context(http=req, endpoint="images", dialect=self.dialect))
