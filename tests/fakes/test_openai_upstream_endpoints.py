"""Models, embeddings, legacy completions and image generation through the SDK."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from tests.fakes import FakeOpenAI
from tests.fakes.conftest import raw_request

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_models(client: openai.AsyncOpenAI) -> None:
    listed = [model async for model in client.models.list()]
    assert {"gpt-4o", "gpt-4o-mini", "gpt-bench"} <= {m.id for m in listed}
    model = await client.models.retrieve("gpt-bench")
    assert (model.id, model.object, model.owned_by) == ("gpt-bench", "model", "system")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("nope")
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


async def test_embeddings_float_are_deterministic_unit_vectors(client: openai.AsyncOpenAI) -> None:
    first = await client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="float"
    )
    again = await client.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float"
    )
    assert first.object == "list" and first.model == "text-embedding-3-small"
    assert [(d.index, d.object, len(d.embedding)) for d in first.data] == [
        (0, "embedding", 1536),
        (1, "embedding", 1536),
    ]
    assert first.data[0].embedding == again.data[0].embedding
    assert first.data[0].embedding != first.data[1].embedding
    assert norm(first.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert (first.usage.prompt_tokens, first.usage.total_tokens) == (3, 3)


async def test_embeddings_base64_matches_float(client: openai.AsyncOpenAI) -> None:
    floats = await client.embeddings.create(
        model="text-embedding-3-small", input="abc", encoding_format="float"
    )
    encoded = await client.embeddings.create(
        model="text-embedding-3-small", input="abc", encoding_format="base64"
    )
    raw = encoded.data[0].embedding
    assert isinstance(raw, str)
    decoded = list(struct.unpack("<1536f", base64.b64decode(raw)))
    assert decoded == floats.data[0].embedding
    default = await client.embeddings.create(
        model="text-embedding-3-small", input="abc"
    )  # SDK asks for base64
    assert default.data[0].embedding == floats.data[0].embedding


async def test_embeddings_dimensions_and_token_input(client: openai.AsyncOpenAI) -> None:
    full = await client.embeddings.create(
        model="text-embedding-3-large", input="abc", encoding_format="float"
    )
    short = await client.embeddings.create(
        model="text-embedding-3-large", input="abc", dimensions=8, encoding_format="float"
    )
    assert len(full.data[0].embedding) == 3072 and len(short.data[0].embedding) == 8
    head = full.data[0].embedding[:8]
    assert short.data[0].embedding == pytest.approx([v / norm(head) for v in head], rel=1e-5)
    tokens = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 4


async def test_embeddings_refusals(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        await client.embeddings.create(model="text-embedding-ada-002", input="abc", dimensions=8)
    with pytest.raises(openai.BadRequestError, match="input' is invalid"):
        await client.embeddings.create(model="text-embedding-3-small", input="")
    with pytest.raises(openai.BadRequestError, match="not allowed to generate embeddings"):
        await client.embeddings.create(model="gpt-4o", input="abc")


async def test_legacy_completion(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="say this", max_tokens=2
    )
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [(0, "echo: say", "length")]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 2)


async def test_legacy_completion_stream(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="one two three",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    *body, final = chunks
    assert "".join(c.choices[0].text for c in body) == "echo: one two three"
    assert body[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "text_completion" and c.usage is None for c in body)
    assert final.choices == [] and final.usage is not None and final.usage.total_tokens == 7


async def test_image_urls_are_served(up: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    images = await client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1024")
    assert images.data is not None and len(images.data) == 1
    image = images.data[0]
    assert image.revised_prompt == "a cat" and image.url is not None
    fetched = await raw_request(up, "GET", image.url.removeprefix(up.url), authorized=False)
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.body.startswith(PNG_MAGIC)


async def test_image_b64(client: openai.AsyncOpenAI) -> None:
    images = await client.images.generate(prompt="a dog", n=2, response_format="b64_json", size="256x256")
    assert images.data is not None and len(images.data) == 2
    assert all(base64.b64decode(d.b64_json or "").startswith(PNG_MAGIC) for d in images.data)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(prompt="a dog", size="1792x1024")  # dall-e-2 sizes only
    assert (caught.value.param, caught.value.code) == ("size", "invalid_value")
