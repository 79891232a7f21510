"""POST /v1/images/generations: validation, and tiny real PNGs (as b64_json or a URL the fake serves)."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Collection
from typing import Any

from tests.fakes import _errors, _params
from tests.fakes._catalog import image_sizes
from tests.fakes._text import random_id

IMAGE_PARAMS = frozenset(
    {
        "prompt", "background", "model", "moderation", "n", "output_compression", "output_format",
        "partial_images", "quality", "response_format", "size", "stream", "style", "user",
    }
)  # fmt: skip
DEFAULT_IMAGE_MODEL = "dall-e-2"


def tiny_png(seed: str) -> bytes:
    """A valid 1x1 RGB PNG whose colour is derived from `seed`."""
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def images_body(
    body: dict[str, Any], models: Collection[str], *, created: int, image_url_base: str, strict_params: bool
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ImagesResponse, and the PNGs to serve by name when response_format is `url`."""
    if strict_params:
        _params.reject_unknown(body, IMAGE_PARAMS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _errors.missing_param("prompt")
    model = body.get("model") or DEFAULT_IMAGE_MODEL
    if not isinstance(model, str):
        raise _errors.invalid_type("model", "a string", model)
    n = _params.optional_int(body, "n", minimum=1, maximum=10) or 1
    size = _params.optional_choice(body, "size", list(image_sizes(model)))
    response_format = _params.optional_choice(body, "response_format", ["url", "b64_json"]) or "url"
    _params.check_model(model, models, "image")
    png = tiny_png(f"{prompt}\0{size}")
    files: dict[str, bytes] = {}
    data: list[dict[str, Any]] = []
    for _ in range(n):
        item: dict[str, Any] = {}
        if response_format == "b64_json":
            item["b64_json"] = base64.b64encode(png).decode()
        else:
            name = random_id("img-", 24) + ".png"
            files[name] = png
            item["url"] = f"{image_url_base}/{name}"
        if model == "dall-e-3":
            item["revised_prompt"] = prompt
        data.append(item)
    return {"created": created, "data": data}, files
