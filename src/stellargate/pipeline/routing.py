"""Which deployments serve a requested model id: the model groups, built once from the settings.

A configured model is a ``ModelGroup``: its ``deployments`` (or its single ``provider``/``model``),
strategy and fallbacks. A ``provider/model`` id is a group of one deployment, made on first use.
Deployments are shared by id (``provider/upstream-model``), so that a deployment listed by two
models has one breaker, one in-flight count and one latency EWMA. The Invoker picks the deployment
per attempt (pipeline/invoke.py); this stage only names the group.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stellargate.core.usage import Price
from stellargate.errors import ModelNotFound
from stellargate.pipeline.auth import check_model
from stellargate.pipeline.breaker import Breaker
from stellargate.pipeline.context import Context, Next
from stellargate.pipeline.deployments import Deployment, Member, ModelGroup
from stellargate.pricing import PriceTable, to_price
from stellargate.providers.base import ProviderAdapter, Target
from stellargate.providers.registry import adapter_for, base_url_for
from stellargate.settings import ModelSettings, ProviderSettings, Settings
from stellargate.web import Result


class Router:
    def __init__(self, settings: Settings, previous: Router | None = None) -> None:
        """``previous``: the live router a config reload replaces; its unchanged deployments are
        taken over with their state (see ``_unchanged``)."""
        self.policy = settings.routing
        self.providers: dict[str, tuple[ProviderSettings, ProviderAdapter, str]] = {
            name: (p, adapter_for(p.type), base_url_for(p, name)) for name, p in settings.providers.items()
        }
        # Taken when a model (or a provider/model id, on first use) names them again.
        self._kept: dict[str, Deployment] = {} if previous is None else self._unchanged(previous)
        self.taken_over: set[str] = set()  # ids of the deployments taken from ``previous``
        self.models: dict[str, ModelSettings] = {m.name: m for m in settings.models}
        self.prices = PriceTable(settings.prices)
        self.deployments: dict[str, Deployment] = {}
        # Set by breaker_sync when Redis shares ejections; given to every deployment made later too.
        self.on_breaker_change: Callable[[Breaker], None] | None = None
        self._groups: dict[str, ModelGroup] = {}
        for ms in settings.models:
            self._groups[ms.name] = self._configured(ms)
        for ms in settings.models:  # after every group exists, so that fallbacks can name any
            g = self._groups[ms.name]
            for name in ms.fallbacks:
                try:
                    g.fallbacks.append(self.group(name))
                except ModelNotFound:
                    pass  # check-config reports it; a provider/ id of an unknown provider is skipped

    def _unchanged(self, previous: Router) -> dict[str, Deployment]:
        """The previous router's deployments that stay the same upstream place: same id (provider
        name and upstream model) and a provider of the same type at the same base URL. Keys,
        headers, timeouts, weights, RPM/TPM and routing settings may change without a reset; a
        deployment whose place changed starts afresh, as its history says nothing of the new one.
        """
        kept: dict[str, Deployment] = {}
        for d in (*previous._kept.values(), *previous.deployments.values()):
            before, now = previous.providers.get(d.provider), self.providers.get(d.provider)
            if before and now and before[0].type == now[0].type and before[2] == now[2]:
                kept[d.id] = d
        return kept

    def _deployment(self, provider: str, upstream: str, rpm: int | None, tpm: int | None) -> Deployment:
        did = f"{provider}/{upstream}"
        d = self.deployments.get(did)
        if d is not None:
            return d
        d = self._kept.pop(did, None)
        if d is None:
            d = Deployment(did, provider, upstream, self.policy, rpm, tpm)
            d.breaker.on_change = self.on_breaker_change
        else:
            self.taken_over.add(did)
            d.configure(self.policy, rpm, tpm)
            if self.on_breaker_change is not None:  # None while a reload builds this router
                d.breaker.on_change = self.on_breaker_change
        self.deployments[did] = d
        return d

    def _target(self, provider: str, upstream: str, public: str, ms: ModelSettings | None) -> Target:
        p, adapter, base = self.providers[provider]
        if ms is not None and ms.price is not None:
            price: Price | None = to_price(ms.price)
        else:
            price = self.prices.lookup(upstream)
        timeouts = ms.timeouts.over(p.timeouts) if ms is not None and ms.timeouts is not None else None
        return Target(
            provider=provider,
            settings=p,
            adapter=adapter,
            base_url=base,
            upstream_model=upstream,
            public_model=public,
            model=ms,
            price=price,
            model_timeouts=timeouts,
        )

    def _configured(self, ms: ModelSettings) -> ModelGroup:
        members = []
        specs = [(d.provider, d.model or ms.upstream_model, d.weight, d.rpm, d.tpm) for d in ms.deployments]
        if not specs:
            specs = [(ms.provider, ms.upstream_model, 1.0, None, None)]
        for provider, upstream, weight, rpm, tpm in specs:
            if provider not in self.providers:
                continue  # check-config reports it
            dep = self._deployment(provider, upstream, rpm, tpm)
            members.append(Member(dep, self._target(provider, upstream, ms.name, ms), weight))
        return ModelGroup(
            name=ms.name,
            members=members,
            policy=self.policy,
            strategy=ms.strategy,
            context_window=ms.context_window,
            fallback_on=frozenset(ms.fallback_on),
        )

    def group(self, model: str) -> ModelGroup:
        g = self._groups.get(model)
        if g is not None and g.members:
            return g
        provider, sep, upstream = model.partition("/")
        if g is not None or not sep or not upstream or provider not in self.providers:
            raise ModelNotFound(
                f"The model '{model}' does not exist or is not served by this gateway.", param="model"
            )
        dep = self._deployment(provider, upstream, None, None)
        g = ModelGroup(model, [Member(dep, self._target(provider, upstream, model, None))], self.policy)
        if len(self._groups) < 10_000:  # provider/model ids are open-ended: bound the memo
            self._groups[model] = g
        return g

    def resolve(self, model: str) -> Target:
        """The group's first deployment: what a check that needs one target (not a call) reads."""
        return self.group(model).members[0].target


class RoutingStage:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, ctx: Context, call_next: Next) -> Result:
        assert ctx.key is not None
        model = ctx.request.model if ctx.request is not None else ctx.model
        check_model(ctx.key, model)
        g = self._router.group(model)
        ctx.route = g
        # Provisional, for the checks between here and the Invoker and for non-chat endpoints
        # (which make one attempt): the strategy's pick now, else the first deployment.
        m = g.pick(time.monotonic()) or g.members[0]
        ctx.target = m.target
        return await call_next(ctx)
