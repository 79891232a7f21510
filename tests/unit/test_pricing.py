"""The bundled price table: every provider family priced, the most specific row wins, config overrides."""

from __future__ import annotations

import pytest

from stellargate.core.usage import Usage
from stellargate.pricing import PriceTable
from stellargate.settings import PriceSettings


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1-nano",
        "o3",
        "gpt-5-mini",
        "text-embedding-3-small",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "claude-opus-4-7",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-2.0-flash",
        "gemini-3-pro-preview",
        "llama-3.3-70b-versatile",
        "openai/gpt-oss-120b",
        "deepseek-chat",
        "deepseek-reasoner",
        "mistral-large-latest",
        "mistral-small-2506",
        "codestral-latest",
    ],
)
def test_current_models_of_every_family_have_a_price(model: str) -> None:
    assert PriceTable().lookup(model) is not None


def test_the_most_specific_row_wins() -> None:
    t = PriceTable()
    mini, full = t.lookup("gpt-4o-mini-2024-07-18"), t.lookup("gpt-4o-2024-08-06")
    assert mini is not None
    assert full is not None
    assert (mini.input, full.input) == (0.15, 2.50)
    lite, flash = t.lookup("gemini-2.5-flash-lite"), t.lookup("gemini-2.5-flash")
    assert lite is not None
    assert flash is not None
    assert lite.input < flash.input
    assert t.lookup("no-such-model") is None


def test_cache_prices_are_used() -> None:
    p = PriceTable().lookup("claude-sonnet-4-6")
    assert p is not None
    cost = p.cost(
        Usage(
            prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=500_000, cache_creation_tokens=100_000
        )
    )
    assert cost == pytest.approx(400_000 * 3.00 / 1e6 + 500_000 * 0.30 / 1e6 + 100_000 * 3.75 / 1e6)


def test_config_overrides_and_extends_the_table() -> None:
    t = PriceTable({"gpt-4o": PriceSettings(input=1.0, output=2.0), "my-local-*": PriceSettings(input=0.01)})
    p = t.lookup("gpt-4o")
    assert p is not None
    assert (p.input, p.output) == (1.0, 2.0)
    local = t.lookup("my-local-llama")
    assert local is not None
    assert local.input == 0.01
