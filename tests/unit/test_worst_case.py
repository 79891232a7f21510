"""What a request may consume at most (the limits' reservation): every answer it asks for, and on
the legacy completions endpoint every prompt of a list."""

from __future__ import annotations

from stellargate.dialects.openai_completions import parse_completions_request
from stellargate.dialects.openai_parse import parse_chat_request
from stellargate.pipeline.estimate import choices, count_text, worst_case
from stellargate.providers.base import Target
from stellargate.providers.openai_compat import OpenAICompatAdapter
from stellargate.settings import ProviderSettings

ENC = "o200k_base"


def _target() -> Target:
    settings = ProviderSettings(type="openai", base_url="http://127.0.0.1:9/v1")
    return Target("p", settings, OpenAICompatAdapter(), "http://127.0.0.1:9/v1", "gpt-4o", "gpt-4o")


def _chat(**extra: object) -> tuple[int, int, int]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50}
    req = parse_chat_request({**body, **extra})
    return worst_case(None, req, _target(), ENC)


def test_a_chat_request_reserves_max_tokens_for_each_of_its_n_answers() -> None:
    prompt, completion, _ = _chat()
    assert completion == 50
    assert _chat(n=4) == (prompt, 200, 0)


def test_legacy_completions_reserve_every_prompt_and_best_of_answers_for_each() -> None:
    one = parse_completions_request({"model": "gpt-4o", "prompt": "Say hi", "max_tokens": 10})
    assert choices(one) == 1
    _, completion, _ = worst_case(None, one, _target(), ENC)
    assert completion == 10

    texts = ["The first prompt of three", "a second one", "and a third, a little longer than the others"]
    many = parse_completions_request(
        {"model": "gpt-4o", "prompt": [*texts, [1, 2, 3, 4, 5]], "max_tokens": 10, "n": 2, "best_of": 3}
    )
    assert choices(many) == 4 * 3  # best_of answers are generated (and billed) for each prompt
    prompt, completion, _ = worst_case(None, many, _target(), ENC)
    assert completion == 10 * 12
    assert prompt >= sum(count_text(t, ENC) for t in texts) + 5  # a token array counts its length

    tokens = parse_completions_request({"model": "gpt-4o", "prompt": [9, 8, 7], "max_tokens": 10})
    assert choices(tokens) == 1  # one prompt given as token ids
    assert worst_case(None, tokens, _target(), ENC)[0] >= 3
