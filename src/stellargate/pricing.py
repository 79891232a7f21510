"""The bundled price table (data/prices.yaml), merged with the config's `prices:`, read once.

A model's cost comes from, in order: its own `price` in the config, a `prices:` entry of the
config, the bundled table. Rows are exact model ids or glob patterns; the exact id wins, then the
longest matching pattern, so `gpt-4o-mini*` beats `gpt-4o*` for `gpt-4o-mini-2024-07-18`.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from stellargate.core.usage import Price

if TYPE_CHECKING:
    from stellargate.settings import PriceSettings


def to_price(p: PriceSettings) -> Price:
    return Price(p.input, p.output, p.cached_input, p.cache_write, p.per_image)


def _bundled() -> dict[str, Price]:
    text = resources.files("stellargate").joinpath("data/prices.yaml").read_text(encoding="utf-8")
    rows: dict[str, Any] = yaml.safe_load(text)["prices"]
    return {
        k: Price(float(v["input"]), float(v["output"]), v.get("cached_input"), v.get("cache_write"))
        for k, v in rows.items()
    }


class PriceTable:
    def __init__(self, overrides: Mapping[str, PriceSettings] | None = None) -> None:
        rows = _bundled()
        rows.update({k: to_price(v) for k, v in (overrides or {}).items()})
        self._exact = {k: v for k, v in rows.items() if "*" not in k}
        # Longest pattern first: the most specific one that matches is the one that applies.
        self._patterns = sorted(((k, v) for k, v in rows.items() if "*" in k), key=lambda kv: -len(kv[0]))
        self._memo: dict[str, Price | None] = {}

    def lookup(self, model: str) -> Price | None:
        if model in self._memo:
            return self._memo[model]
        found = self._exact.get(model)
        if found is None:
            found = next((p for pat, p in self._patterns if fnmatchcase(model, pat)), None)
        if len(self._memo) < 10_000:  # model ids are open-ended (provider/model): bound the memo
            self._memo[model] = found
        return found
