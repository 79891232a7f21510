"""POST /v1/embeddings: validation and deterministic unit-length vectors."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from collections.abc import Collection
from typing import Any

from tests.fakes import _errors, _params
from tests.fakes._catalog import embedding_dimensions, supports_dimensions
from tests.fakes._text import count_tokens

EMBEDDING_PARAMS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)


def embedding_vector(model: str, text: str, dimensions: int | None) -> list[float]:
    """The full-size vector is seeded from sha256(model, text); `dimensions` truncates then renormalises
    (as OpenAI's shortened embeddings do). Values are float32-exact, so float and base64 agree."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    full = [rng.gauss(0.0, 1.0) for _ in range(embedding_dimensions(model))]
    vector = full[: dimensions or len(full)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    packed = struct.pack(f"<{len(vector)}f", *(v / norm for v in vector))
    return list(struct.unpack(f"<{len(vector)}f", packed))


def _inputs(value: Any) -> list[str | list[int]]:
    """Normalise `input` into a list of strings / token arrays, rejecting what OpenAI rejects."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise _errors.invalid_request(_INVALID_INPUT)
    if not items or len(items) > 2048:
        raise _errors.invalid_request(_INVALID_INPUT)
    for item in items:
        valid_tokens = isinstance(item, list) and item and all(isinstance(t, int) for t in item)
        if not (isinstance(item, str) and item) and not valid_tokens:
            raise _errors.invalid_request(_INVALID_INPUT)
    return items


def _dimensions(body: dict[str, Any], model: str) -> int | None:
    dimensions = _params.optional_int(body, "dimensions", minimum=1, maximum=embedding_dimensions(model))
    if dimensions is not None and not supports_dimensions(model):
        raise _errors.invalid_request("This model does not support specifying dimensions.")
    return dimensions


def embeddings_body(body: dict[str, Any], models: Collection[str], *, strict_params: bool) -> dict[str, Any]:
    model = _params.require_model(body)
    if strict_params:
        _params.reject_unknown(body, EMBEDDING_PARAMS)
    if "input" not in body:
        raise _errors.missing_param("input")
    items = _inputs(body["input"])
    encoding = _params.optional_choice(body, "encoding_format", ["float", "base64"]) or "float"
    _params.check_model(model, models, "embedding")
    dimensions = _dimensions(body, model)
    data: list[dict[str, Any]] = []
    tokens = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
        tokens += count_tokens(item) if isinstance(item, str) else len(item)
        vector = embedding_vector(model, text, dimensions)
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
