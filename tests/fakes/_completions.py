"""POST /v1/completions (legacy `text_completion`), streaming included."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tests.fakes import _errors, _params
from tests.fakes._chat import apply_limits
from tests.fakes._text import count_tokens, group_words, prompt_text, random_id

COMPLETION_PARAMS = frozenset(
    {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens",
        "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p",
        "user",
    }
)  # fmt: skip
DEFAULT_MAX_TOKENS = 16  # the legacy endpoint's default


@dataclass(frozen=True)
class TextChoice:
    index: int
    text: str
    finish_reason: str


@dataclass(frozen=True)
class CompletionResult:
    id: str
    created: int
    model: str
    system_fingerprint: str
    choices: tuple[TextChoice, ...]
    usage: dict[str, int]
    stream: bool
    include_usage: bool


def _prompts(body: dict[str, Any]) -> list[Any]:
    if "prompt" not in body or body["prompt"] is None:
        raise _errors.missing_param("prompt")
    prompt = body["prompt"]
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        return prompt
    raise _errors.invalid_type("prompt", "a string or an array", prompt)


def generate_completion(
    body: dict[str, Any],
    models: Collection[str],
    *,
    created: int,
    system_fingerprint: str,
    strict_params: bool,
) -> CompletionResult:
    """Each prompt P answers `echo: P` (with `echo: true`, `P` + that), cut by stop / max_tokens (16)."""
    model = _params.require_model(body)
    if strict_params:
        _params.reject_unknown(body, COMPLETION_PARAMS)
    prompts = _prompts(body)
    _params.sampling_params(body)
    n = _params.optional_int(body, "n", minimum=1, maximum=128) or 1
    max_tokens = _params.optional_int(body, "max_tokens", minimum=0)
    stop = _params.stop_sequences(body)
    stream = bool(_params.optional_bool(body, "stream"))
    options = _params.stream_options(body, stream)
    echo = bool(_params.optional_bool(body, "echo"))
    _params.check_model(model, models, "completion")
    choices: list[TextChoice] = []
    for prompt in prompts:
        text = prompt_text(prompt)
        for _ in range(n):
            answer, finish = apply_limits(
                f"echo: {text}", stop, DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
            )
            choices.append(TextChoice(len(choices), (text + answer) if echo else answer, finish))
    prompt_tokens = sum(count_tokens(p) if isinstance(p, str) else len(p) for p in prompts)
    completion_tokens = sum(count_tokens(c.text) for c in choices)
    return CompletionResult(
        id=random_id("cmpl-", 29),
        created=created,
        model=model,
        system_fingerprint=system_fingerprint,
        choices=tuple(choices),
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        stream=stream,
        include_usage=options.get("include_usage") is True,
    )


def _envelope(result: CompletionResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "object": "text_completion",
        "created": result.created,
        "model": result.model,
        "system_fingerprint": result.system_fingerprint,
    }


def completion_body(result: CompletionResult) -> dict[str, Any]:
    choices = [
        {"text": c.text, "index": c.index, "logprobs": None, "finish_reason": c.finish_reason}
        for c in result.choices
    ]
    return {**_envelope(result), "choices": choices, "usage": result.usage}


def completion_chunks(result: CompletionResult, *, words_per_chunk: int) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for choice in result.choices:
        for piece in group_words(choice.text, words_per_chunk):
            entry = {"text": piece, "index": choice.index, "logprobs": None, "finish_reason": None}
            chunks.append({**_envelope(result), "choices": [entry]})
        entry = {"text": "", "index": choice.index, "logprobs": None, "finish_reason": choice.finish_reason}
        chunks.append({**_envelope(result), "choices": [entry]})
    if result.include_usage:
        for chunk in chunks:
            chunk["usage"] = None
        chunks.append({**_envelope(result), "choices": [], "usage": result.usage})
    return chunks
