"""OpenAI's ``POST /v1/embeddings`` and ``POST /v1/images/generations``: request validation into
the canonical requests, and rendering of canonical answers (used when the provider is not
OpenAI-compatible; otherwise the upstream body is forwarded as it is)."""

from __future__ import annotations

import base64
import re
import sys
from array import array
from typing import Any

import orjson

from stellargate.core.embeddings import EmbeddingInput, EmbeddingsRequest, EmbeddingsResponse
from stellargate.core.images import ImagesRequest, ImagesResponse
from stellargate.dialects.validate import (
    integer,
    is_tokens,
    missing,
    optional_string,
    required_model,
    type_error,
)
from stellargate.errors import InvalidRequest

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
MAX_IMAGES = 4  # the gateway's limit per request: each image is slow and dear
MAX_IMAGE_PROMPT = 4000
IMAGE_SIZES = frozenset({"auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024",
                         "1024x1792"})  # fmt: skip
IMAGE_QUALITIES = ("auto", "low", "medium", "high", "xhigh", "max", "standard", "hd")
_CUSTOM_SIZE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")


def _choice(body: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    v = body.get(key)
    if v is None:
        return None
    if v not in allowed:
        raise InvalidRequest(
            f"Invalid value for '{key}': {v!r}. Supported values are: {', '.join(map(repr, allowed))}.",
            param=key,
            code="invalid_value",
        )
    return str(v)


# -- embeddings -------------------------------------------------------------------------------


def _inputs(value: Any) -> list[EmbeddingInput]:
    if value is None:
        raise missing("input")
    if isinstance(value, str) or is_tokens(value):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise type_error("input", "a string, an array of strings, or an array of token arrays")
    if not items:
        raise InvalidRequest("Invalid 'input': empty array.", param="input", code="empty_array")
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(
            f"Invalid 'input': at most {MAX_INPUTS} inputs per request, got {len(items)}.",
            param="input",
            code="invalid_value",
        )
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(
                    f"Invalid 'input[{i}]': empty string.", param=f"input[{i}]", code="invalid_value"
                )
        elif not is_tokens(item):
            raise type_error(f"input[{i}]", "a non-empty string or a non-empty array of integers")
    return items


def parse_embeddings_request(body: Any) -> EmbeddingsRequest:
    model = required_model(body)
    encoding = _choice(body, "encoding_format", ("float", "base64")) or "float"
    return EmbeddingsRequest(
        model=model,
        inputs=_inputs(body.get("input")),
        encoding_format="base64" if encoding == "base64" else "float",
        dimensions=integer(body, "dimensions", 1),
        user=optional_string(body, "user"),
        extra={
            k: v
            for k, v in body.items()
            if k not in ("model", "input", "encoding_format", "dimensions", "user")
        },
        raw=body,
    )


def _base64(vector: list[float]) -> str:
    floats = array("f", vector)
    if sys.byteorder == "big":  # the wire format is little-endian float32
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()


def render_embeddings(resp: EmbeddingsResponse, req: EmbeddingsRequest) -> bytes:
    if resp.body is not None:
        return resp.body
    b64 = req.encoding_format == "base64"
    tokens = resp.usage.prompt_tokens if resp.usage is not None else 0
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _base64(v) if b64 else v}
                for i, v in enumerate(resp.vectors)
            ],
            "model": resp.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# -- images -----------------------------------------------------------------------------------


def _size(body: dict[str, Any]) -> str | None:
    v = body.get("size")
    if v is None:
        return None
    if not isinstance(v, str):
        raise type_error("size", "a string")
    if v in IMAGE_SIZES:
        return v
    # Newer image models take any WIDTHxHEIGHT with both edges multiples of 16, at most 3840
    # pixels, and an aspect ratio between 1:3 and 3:1.
    m = _CUSTOM_SIZE.match(v)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
        if w % 16 == 0 and h % 16 == 0 and max(w, h) <= 3840 and max(w, h) <= 3 * min(w, h):
            return v
    raise InvalidRequest(
        f"Invalid value for 'size': {v!r}. Supported values are: {', '.join(sorted(IMAGE_SIZES))}, or "
        "WIDTHxHEIGHT with both edges multiples of 16, at most 3840, and an aspect ratio within 3:1.",
        param="size",
        code="invalid_value",
    )


def parse_images_request(body: Any) -> ImagesRequest:
    model = required_model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if not isinstance(prompt, str):
        raise type_error("prompt", "a string")
    if not prompt.strip():
        raise InvalidRequest("Invalid 'prompt': empty string.", param="prompt", code="invalid_value")
    if len(prompt) > MAX_IMAGE_PROMPT:
        raise InvalidRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_IMAGE_PROMPT}, "
            f"but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    if body.get("stream") not in (None, False):
        raise InvalidRequest(
            "Streaming image generation is not supported by this gateway.",
            param="stream",
            code="invalid_value",
        )
    rf = _choice(body, "response_format", ("url", "b64_json"))
    known = ("model", "prompt", "n", "size", "quality", "response_format", "style", "user", "stream")
    return ImagesRequest(
        model=model,
        prompt=prompt,
        n=integer(body, "n", 1, MAX_IMAGES) or 1,
        size=_size(body),
        quality=_choice(body, "quality", IMAGE_QUALITIES),
        response_format="b64_json" if rf == "b64_json" else "url" if rf == "url" else None,
        style=_choice(body, "style", ("vivid", "natural")),
        user=optional_string(body, "user"),
        extra={k: v for k, v in body.items() if k not in known},
        raw=body,
    )


def render_images(resp: ImagesResponse, req: ImagesRequest) -> bytes:
    if resp.body is not None:
        return resp.body
    data = []
    for img in resp.images:
        item: dict[str, Any] = {}
        if img.url is not None:
            item["url"] = img.url
        if img.b64_json is not None:
            item["b64_json"] = img.b64_json
        if img.revised_prompt is not None:
            item["revised_prompt"] = img.revised_prompt
        data.append(item)
    return orjson.dumps({"created": resp.created, "data": data})
