"""Which adapter serves which provider ``type``, and the providers the environment implies.

OpenAI-compatible servers are rows of ``openai_compat.PRESETS``. Providers with a native API
of their own are rows of ``NATIVE``: the adapter class (imported on first use), the default base
URL, and the environment variable their users already export.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from stellargate.providers.base import ProviderAdapter
from stellargate.providers.openai_compat import PRESETS, OpenAICompatAdapter

if TYPE_CHECKING:
    from stellargate.settings import ProviderSettings


@dataclass(frozen=True, slots=True)
class Native:
    adapter: str  # "module:Class"
    base_url: str
    key_env: tuple[str, ...]


NATIVE: dict[str, Native] = {
    "gemini": Native(
        "stellargate.providers.gemini:GeminiAdapter",
        "https://generativelanguage.googleapis.com",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ),
    "anthropic": Native(
        "stellargate.providers.anthropic:AnthropicAdapter",
        "https://api.anthropic.com",
        ("ANTHROPIC_API_KEY",),
    ),
}


@cache
def _adapters() -> dict[str, ProviderAdapter]:
    openai = OpenAICompatAdapter()
    # Every OpenAI-compatible preset is a type of its own, so `type: groq` needs no base_url.
    table: dict[str, ProviderAdapter] = {name: openai for name in PRESETS}
    for type_, n in NATIVE.items():
        module, _, cls = n.adapter.partition(":")
        table[type_] = getattr(importlib.import_module(module), cls)()
    return table


def provider_types() -> list[str]:
    return sorted(_adapters())


def adapter_for(type_: str) -> ProviderAdapter:
    return _adapters()[type_]


def base_url_for(settings: ProviderSettings, name: str) -> str:
    if settings.base_url:
        return settings.base_url
    if settings.type in NATIVE:
        return NATIVE[settings.type].base_url
    preset = PRESETS.get(settings.type) or PRESETS.get(name)
    if preset is None:
        raise KeyError(f"provider {name!r} of type {settings.type!r} needs a base_url")
    return preset.base_url


def providers_from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The providers whose usual environment variables are set, for running without a config file."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in PRESETS.items():
        key = env.get(p.key_env) if p.key_env else None
        url = env.get(p.url_env) if p.url_env else None
        if p.url_env:
            if url:
                base = url.rstrip("/")
                out[name] = {"type": name, "base_url": base if base.endswith("/v1") else base + "/v1"}
                if key:
                    out[name]["api_key"] = key
        elif key:
            out[name] = {"type": name, "api_key": key}
    for type_, n in NATIVE.items():
        for var in n.key_env:
            if env.get(var):
                out[type_] = {"type": type_, "api_key": env[var]}
                break
    return out
