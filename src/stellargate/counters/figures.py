"""The figures a key may be limited by: the ``limits:`` defaults, each named plan, and a key's own
overrides all have this one shape, and are merged in that order (a key's figure wins).

A figure left out inherits from the layer below; ``"unlimited"`` lifts a limit the layer below
set. Built in beneath everything: 50 requests a second and 100 in flight per key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Figure = Annotated[float, Field(ge=0)] | Literal["unlimited"]

ENDPOINT_CLASSES = ("chat", "embeddings", "images")
BUILT_IN: dict[str, Any] = {"rps": 50, "concurrency": 100}


class EndpointFigures(BaseModel):
    """Request and token rates for one endpoint class (chat, embeddings, images)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rps: Figure | None = None
    rpm: Figure | None = None
    rph: Figure | None = None
    rpd: Figure | None = None
    tpm: Figure | None = None


class LimitFigures(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rps: Figure | None = None  # requests per second
    rpm: Figure | None = None  # requests per minute
    rph: Figure | None = None  # requests per hour (the hourly ceiling)
    rpd: Figure | None = None  # requests per day
    tpm: Figure | None = None  # tokens (prompt + completion) per minute
    tokens_per_month: Figure | None = None  # calendar month, UTC
    concurrency: Figure | None = None  # requests in flight at once
    spend_per_day: Figure | None = None  # USD, calendar day UTC, priced from the model table
    spend_per_month: Figure | None = None  # USD, calendar month UTC
    endpoints: dict[Literal["chat", "embeddings", "images"], EndpointFigures] = Field(default_factory=dict)


def merged(*layers: LimitFigures | dict[str, Any] | None) -> dict[str, Any]:
    """The effective figures of layers (lowest first, built-in figures beneath them all), as a
    flat dict ``{"rpm": 60, "images.rpm": 20, ...}`` without the unlimited ones."""
    out: dict[str, Any] = dict(BUILT_IN)
    for layer in layers:
        if layer is None:
            continue
        data = layer.model_dump(exclude_none=True) if isinstance(layer, BaseModel) else layer
        for name, value in data.items():
            if name == "endpoints":
                for cls, figs in (value or {}).items():
                    for fname, v in (figs or {}).items():
                        if v is not None:
                            out[f"{cls}.{fname}"] = v
            elif value is not None:
                out[name] = value
    return {k: v for k, v in out.items() if v != "unlimited"}
