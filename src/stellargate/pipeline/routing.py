"""Which provider and upstream model serve a requested model id."""

from __future__ import annotations

from stellargate.core.usage import Price
from stellargate.errors import ModelNotFound
from stellargate.pipeline.auth import check_model
from stellargate.pipeline.context import Context, Next
from stellargate.providers.base import ProviderAdapter, Target
from stellargate.providers.registry import adapter_for, base_url_for
from stellargate.settings import ModelSettings, ProviderSettings, Settings
from stellargate.web import Result


class Router:
    def __init__(self, settings: Settings) -> None:
        self.providers: dict[str, tuple[ProviderSettings, ProviderAdapter, str]] = {
            name: (p, adapter_for(p.type), base_url_for(p, name)) for name, p in settings.providers.items()
        }
        self.models: dict[str, ModelSettings] = {m.name: m for m in settings.models}
        self._targets: dict[str, Target] = {}

    def resolve(self, model: str) -> Target:
        t = self._targets.get(model)
        if t is not None:
            return t
        ms = self.models.get(model)
        if ms is not None:
            provider, upstream = ms.provider, ms.upstream_model
        else:
            provider, sep, upstream = model.partition("/")
            if not sep or not upstream or provider not in self.providers:
                raise ModelNotFound(
                    f"The model '{model}' does not exist or is not served by this gateway.", param="model"
                )
        p, adapter, base = self.providers[provider]
        price = None
        if ms is not None and ms.price is not None:
            pr = ms.price
            price = Price(pr.input, pr.output, pr.cached_input, pr.cache_write, pr.per_image)
        t = Target(
            provider=provider,
            settings=p,
            adapter=adapter,
            base_url=base,
            upstream_model=upstream,
            public_model=model,
            model=ms,
            price=price,
        )
        if len(self._targets) < 10_000:  # provider/model ids are open-ended: bound the memo
            self._targets[model] = t
        return t


class RoutingStage:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        assert ctx.key is not None
        model = ctx.request.model if ctx.request is not None else ctx.model
        check_model(ctx.key, model)
        ctx.target = self._router.resolve(model)
        return await call_next(ctx)
