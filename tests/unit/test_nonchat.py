"""The pure parts of the task API and the OpenAI endpoints beyond chat."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any, ClassVar

import orjson
import pytest

from stellargate.core.embeddings import EmbeddingsRequest
from stellargate.core.usage import Price, Usage
from stellargate.dialects.openai_extra import (
    parse_embeddings_request,
    parse_images_request,
    render_embeddings,
)
from stellargate.dialects.tasks import classify, parse_task_request
from stellargate.errors import InvalidRequest, UpstreamError
from stellargate.pipeline.context import Context
from stellargate.pipeline.nonchat import EmbeddingsInvoker
from stellargate.providers.base import Capabilities, Target, UpstreamResponse, embeddings_support
from stellargate.providers.openai_compat import OpenAICompatAdapter
from stellargate.providers.openai_compat_extra import _tail_usage
from stellargate.settings import ProviderSettings
from stellargate.web import Request

CLASSES = [{"id": "pos", "label": "Positive"}, {"id": "neg", "label": "Negative"}]


def test_classify_accepts_only_the_given_classes() -> None:
    assert classify('{"class": "neg"}', CLASSES) == CLASSES[1]
    assert classify('{"class": "Positive"}', CLASSES) == CLASSES[0]  # a label names its class too
    assert classify('"pos"', CLASSES) == CLASSES[0]
    for bad in ('{"class": "maybe"}', "pos", "", None, "[1]", '{"other": "pos"}'):
        with pytest.raises(UpstreamError, match="not one of the given classes"):
            classify(bad, CLASSES)


def test_classification_request_carries_the_enum() -> None:
    req = parse_task_request({"model": "a/b", "user_prompt": "x", "classes": CLASSES}, "classification")
    assert req.response_format is not None
    assert req.response_format.schema is not None
    assert req.response_format.schema["properties"]["class"]["enum"] == ["pos", "neg"]
    assert req.response_format.strict is True
    assert [m.role for m in req.messages] == ["system", "user"]


def test_tail_usage_reads_only_the_end_and_falls_back() -> None:
    body = orjson.dumps({"object": "list", "data": [{"embedding": [0.5] * 8}], "usage": {"prompt_tokens": 3}})
    assert _tail_usage(body) == {"prompt_tokens": 3}
    first = orjson.dumps({"usage": {"prompt_tokens": 3}, "data": [{"embedding": [0.5]}]})
    assert _tail_usage(first) == {"prompt_tokens": 3}  # the tail is still one object
    nested = b'{"data": [{"usage": {"x": 1}, "embedding": []}], "model": "m"}'
    assert _tail_usage(nested) is None  # unbalanced tail: the caller parses the whole body
    assert _tail_usage(b'{"data": []}') is None


def _target() -> Target:
    settings = ProviderSettings(type="openai", base_url="http://127.0.0.1:9/v1")
    return Target("p", settings, OpenAICompatAdapter(), "http://127.0.0.1:9/v1", "up-model", "m")


def test_translated_embeddings_decode_base64_and_render_both_formats() -> None:
    adapter = OpenAICompatAdapter()
    vec = [0.25, -0.5, 1.0]
    b64 = base64.b64encode(struct.pack("<3f", *vec)).decode()
    body = orjson.dumps(
        {"data": [{"index": 0, "embedding": b64}], "model": "m", "usage": {"prompt_tokens": 2}}
    )
    req = EmbeddingsRequest(model="m", inputs=["x"], dialect="gemini")  # not OpenAI: no identity path
    up = adapter.embeddings_request(req, _target())
    assert orjson.loads(up.body)["encoding_format"] == "base64"
    out = adapter.embeddings_response(UpstreamResponse(200, {}, body), req, _target())
    assert out.vectors == [vec]
    assert out.body is None
    assert orjson.loads(render_embeddings(out, req))["data"][0]["embedding"] == vec
    req.encoding_format = "base64"
    assert orjson.loads(render_embeddings(out, req))["data"][0]["embedding"] == b64


class _ChatOnly:
    name: ClassVar[str] = "chat-only"
    capabilities: ClassVar[Capabilities] = Capabilities()
    native_dialect: ClassVar[str | None] = None


def test_a_provider_without_embeddings_answers_400() -> None:
    assert embeddings_support(_ChatOnly()) is None  # type: ignore[arg-type]
    assert embeddings_support(OpenAICompatAdapter()) is not None
    t = _target()
    t.adapter = _ChatOnly()  # type: ignore[assignment]
    scope: dict[str, Any] = {"method": "POST", "path": "/v1/embeddings", "headers": []}
    ctx = Context(http=Request(scope, _never), endpoint="embeddings", dialect=None)  # type: ignore[arg-type]
    ctx.payload, ctx.target = parse_embeddings_request({"model": "m", "input": "x"}), t
    invoker = EmbeddingsInvoker(None, render_embeddings)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="does not support embeddings") as e:
        asyncio.run(invoker(ctx))
    assert e.value.http_status == 400
    assert ctx.attempts == 0


async def _never() -> dict[str, Any]:
    raise AssertionError("not read")


def test_images_price_per_image() -> None:
    assert Price(per_image=0.04).cost(Usage(images=3)) == pytest.approx(0.12)
    assert Price(input=1.0).cost(Usage(prompt_tokens=1_000_000, images=2)) == pytest.approx(1.0)


@pytest.mark.parametrize("size", ["1024x1024", "auto", "1536x864", "3840x2160"])
def test_image_sizes_accepted(size: str) -> None:
    assert parse_images_request({"model": "m", "prompt": "p", "size": size}).size == size


@pytest.mark.parametrize("size", ["100x100", "4000x4000", "1600x400", "big", "0x0", "1024x1024 "])
def test_image_sizes_refused(size: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_images_request({"model": "m", "prompt": "p", "size": size})
