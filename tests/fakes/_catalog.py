"""The models the fake serves, what kind each one is, and the Model objects for /v1/models."""

from __future__ import annotations

from typing import Any, Literal

ModelKind = Literal["chat", "completion", "embedding", "image"]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-bench",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "dall-e-2",
    "dall-e-3",
)

MODEL_CREATED = 1715367049
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 1536
IMAGE_SIZES: dict[str, tuple[str, ...]] = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
DEFAULT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")


def model_kind(model: str) -> ModelKind:
    """Infer the kind from the id, the way OpenAI's families are named; anything else is a chat model."""
    if "embedding" in model:
        return "embedding"
    if model.startswith(("dall-e", "gpt-image")):
        return "image"
    if "instruct" in model or model in ("davinci-002", "babbage-002"):
        return "completion"
    return "chat"


def supports_dimensions(model: str) -> bool:
    return model.startswith("text-embedding-3")


def embedding_dimensions(model: str) -> int:
    return EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)


def image_sizes(model: str) -> tuple[str, ...]:
    return IMAGE_SIZES.get(model, DEFAULT_IMAGE_SIZES)


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}


def model_list(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}
