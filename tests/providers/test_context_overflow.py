"""Each adapter recognises its own provider's context-overflow 400 (and nothing else) as the
gateway's ``context_length_exceeded``, which pipeline/retry.py classes as ``context_window``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stellargate.errors import GatewayError
from stellargate.pipeline.retry import error_class
from stellargate.providers.anthropic import AnthropicAdapter
from stellargate.providers.base import UpstreamResponse
from stellargate.providers.gemini import GeminiAdapter
from stellargate.providers.openai_compat import OpenAICompatAdapter


def _resp(status: int, body: Any) -> UpstreamResponse:
    return UpstreamResponse(status, {}, orjson.dumps(body))


def _anthropic(message: str, status: int = 400, kind: str = "invalid_request_error") -> GatewayError:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    return AnthropicAdapter().map_error(_resp(status, body))


def _gemini(message: str, status: int = 400, name: str = "INVALID_ARGUMENT") -> GatewayError:
    return GeminiAdapter().map_error(
        _resp(status, {"error": {"code": status, "message": message, "status": name}})
    )


def _openai(body: Any, status: int = 400) -> GatewayError:
    return OpenAICompatAdapter().map_error(_resp(status, body))


def _err(message: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None, **extra}
    }


OVERFLOWS: list[tuple[str, GatewayError]] = [
    ("anthropic prompt", _anthropic("prompt is too long: 210000 tokens > 200000 maximum")),
    (
        "anthropic prompt + max_tokens",
        _anthropic(
            "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input "
            "length or `max_tokens` and try again"
        ),
    ),
    (
        "gemini",
        _gemini("The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."),
    ),
    (
        "openai code",
        _openai(_err("This model's maximum...", param="messages", code="context_length_exceeded")),
    ),
    (
        "vllm top-level",
        _openai(
            {
                "object": "error",
                "message": "This model's maximum context length is 16384 tokens. However, you requested "
                "122946 tokens (112946 in the messages, 10000 in the completion). Please reduce the length "
                "of the messages or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        ),
    ),
    (
        "deepseek",
        _openai(
            _err(
                "This model's maximum context length is 65536 tokens. However, you requested 66343 tokens "
                "(62247 in the messages, 4096 in the completion).",
                code="invalid_request_error",
            )
        ),
    ),
    (
        "mistral",
        _openai(
            {
                "object": "error",
                "message": "Prompt contains 40982 tokens and 0 draft tokens, too large for model with 32768 "
                "maximum context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        ),
    ),
    (
        "llama.cpp",
        _openai(
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 14429,
                    "n_ctx": 8192,
                }
            }
        ),
    ),
    (
        "llama.cpp as a 500",
        _openai(
            {
                "error": {
                    "code": 500,
                    "message": "the request exceeds ...",
                    "type": "exceed_context_size_error",
                }
            },
            status=500,
        ),
    ),
    ("ollama", _openai(_err("prompt too long; exceeded max context length by 4096 tokens"))),
    ("ollama native", _openai({"error": "the input length exceeds the context length"})),
]


@pytest.mark.parametrize(("name", "err"), OVERFLOWS, ids=[n for n, _ in OVERFLOWS])
def test_overflow_is_context_length_exceeded(name: str, err: GatewayError) -> None:
    assert (err.http_status, err.code, err.param) == (400, "context_length_exceeded", "messages")
    assert error_class(err) == "context_window"


OTHERS: list[tuple[str, GatewayError]] = [
    ("anthropic max_tokens alone", _anthropic("max_tokens: 100000 > 64000, which is the maximum allowed")),
    ("anthropic overflow wording as a 413", _anthropic("prompt is too long: 2 tokens > 1 maximum", 413)),
    ("anthropic unrelated mention", _anthropic("messages: the prompt is too long: please shorten it")),
    ("gemini other argument", _gemini("* GenerateContentRequest.generation_config.temperature: bad")),
    ("gemini overflow wording, other status", _gemini("The input token count (9) exceeds the maximum", 429)),
    ("openai other 400", _openai(_err("Invalid value for 'temperature'.", code="invalid_value"))),
    ("overflow wording as a 500", _openai(_err("This model's maximum context length is 8 tokens."), 500)),
    ("max_tokens too large (vLLM)", _openai(_err("max_tokens must be at least 1, got -186."))),
]


@pytest.mark.parametrize(("name", "err"), OTHERS, ids=[n for n, _ in OTHERS])
def test_other_errors_are_not_overflows(name: str, err: GatewayError) -> None:
    assert err.code != "context_length_exceeded"
    assert error_class(err) != "context_window"
