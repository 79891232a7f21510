"""Which limits apply to a key (plans, overrides, endpoint classes), calendar periods, worst cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from stellargate.core.request import ChatRequest, ImagePart, Message, TextPart, ToolCall
from stellargate.core.usage import Price
from stellargate.counters import Decision, item
from stellargate.counters.figures import merged
from stellargate.counters.policy import Policy, items_for, period_bounds
from stellargate.pipeline.estimate import (
    PREFIX_CHARS,
    TOKENS_PER_IMAGE,
    _Budget,
    _counted,
    chat_prompt_tokens,
    count_text,
    encoding_for,
)
from stellargate.pipeline.limits import _duration, rate_headers, worst_cost
from stellargate.settings import Settings
from stellargate.storage.records import KeyRecord


def key(plan: str | None = None, **limits: object) -> KeyRecord:
    return KeyRecord(id="key_x", name="k", key_hash="h", prefix="p", created_at=0, updated_at=0,
                     plan=plan, limits=dict(limits))  # fmt: skip


SETTINGS = Settings.model_validate(
    {
        "limits": {"rpm": 60, "endpoints": {"images": {"rpm": 20}}},
        "plans": {"pro": {"rpm": 600, "rps": "unlimited", "spend_per_day": 5}},
    }
)


def test_figures_merge_built_in_defaults_plan_and_key_in_that_order() -> None:
    p = Policy(SETTINGS)
    assert p.figures(key()) == {"rps": 50, "concurrency": 100, "rpm": 60, "images.rpm": 20}
    assert p.figures(key("pro")) == {"concurrency": 100, "rpm": 600, "images.rpm": 20, "spend_per_day": 5}
    assert p.figures(key("pro", rpm=10, concurrency="unlimited"))["rpm"] == 10
    assert "concurrency" not in p.figures(key("pro", concurrency="unlimited"))
    assert merged(None, {"rps": "unlimited", "concurrency": "unlimited"}) == {}


def test_endpoint_classes_get_their_own_limits_on_top_of_the_key_wide_ones() -> None:
    p = Policy(SETTINGS)
    images = {s.name for s in p.specs(key(), "images")}
    chat = {s.name for s in p.specs(key(), "completions")}  # legacy completions count as chat
    assert images == {"rps", "concurrency", "rpm", "images.rpm"}
    assert chat == {"rps", "concurrency", "rpm"}
    spend = next(s for s in p.specs(key("pro"), "chat") if s.name == "spend_per_day")
    assert spend.fails_closed and spend.kind == "q"
    assert not next(s for s in p.specs(key(), "chat") if s.name == "rpm").fails_closed


def test_calendar_periods_roll_over_at_utc_midnight_and_month_end() -> None:
    dec31 = datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC).timestamp()
    assert period_bounds("day", dec31) == ("2026-12-31", 60.0)
    assert period_bounds("month", dec31) == ("2026-12", 60.0)
    feb = datetime(2028, 2, 28, 12, tzinfo=UTC).timestamp()
    assert period_bounds("month", feb)[1] == 36 * 3600  # 2028 is a leap year


def test_prompts_are_counted_with_the_model_familys_tokenizer() -> None:
    assert encoding_for("gpt-4o-mini") == "o200k_base"
    assert encoding_for("openai/o3") == "o200k_base"
    assert encoding_for("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_for("claude-sonnet-4") == "cl100k_base"  # the documented approximation
    assert count_text("hello world", "o200k_base") == 2
    req = ChatRequest(model="gpt-4o", messages=[Message(role="user", content=[TextPart("hello world")])])
    assert chat_prompt_tokens(req, "o200k_base") == 2 + 4 + 3


def test_a_huge_prompt_is_counted_over_a_prefix_and_extrapolated() -> None:
    text = "lorem ipsum dolor sit amet " * 4000
    exact = count_text(text[:PREFIX_CHARS], "cl100k_base")
    estimate = count_text(text, "cl100k_base")
    assert abs(estimate - exact * len(text) / PREFIX_CHARS) <= 1


def test_worst_case_cost_and_reset_durations() -> None:
    assert worst_cost(Price(2.5, 10.0), 1000, 500, 0) == (1000 * 2.5 + 500 * 10) / 1e6
    assert worst_cost(Price(1.0, 1.0, cache_write=1.25), 1000, 0, 0) == 1000 * 1.25 / 1e6
    assert worst_cost(None, 1000, 500, 0) == 0
    assert [_duration(x) for x in (0.02, 1, 59.5, 360, 3723)] == ["20ms", "1s", "1m0s", "6m0s", "1h2m3s"]


def test_many_long_messages_are_counted_within_one_budget_per_request() -> None:
    import time

    words = "the quick brown fox jumps over the lazy dog while tokenizers count every word "
    texts = [f"{i} " + words * 60 for i in range(200)]  # 200 distinct messages of ~4,800 characters
    req = ChatRequest(model="gpt-4o", messages=[Message(role="user", content=[TextPart(t)]) for t in texts])
    exact = sum(count_text(t, "o200k_base") for t in texts) + 4 * len(texts) + 3
    t0 = time.process_time()
    estimate = chat_prompt_tokens(req, "o200k_base")
    spent = time.process_time() - t0
    assert abs(estimate - exact) / exact < 0.05
    assert spent < 0.01  # ~960,000 characters, but only PREFIX_CHARS of them tokenized


def _counted_with_one_budget(req: ChatRequest, encoding: str) -> int:
    """The plain reading of the rules: every text through one _Budget, in message order."""
    b = _Budget(encoding)
    tokens = 4 * len(req.messages) + 3
    for m in req.messages:
        for p in m.content:
            if isinstance(p, ImagePart):
                tokens += TOKENS_PER_IMAGE
            elif isinstance(p, TextPart):
                tokens += b.count(p.text)
        for t in m.tool_calls:
            tokens += b.count(t.name) + b.count(t.arguments)
    for tool in req.tools or ():
        tokens += b.count(f"{tool.name} {tool.description or ''} {tool.parameters or ''}")
    return tokens


def test_the_inline_count_equals_counting_every_text_through_one_budget() -> None:
    rng = random.Random(5)
    words = ["gateway", "limits", "token", "budget", "a", "an", "the", "to", "of", "ünïcode", "東京", "42",
             "1234567", "...", "\n\t", ""]  # fmt: skip
    for case in range(60):
        msgs = []
        for _ in range(rng.randint(1, 6)):
            parts: list[TextPart | ImagePart] = []
            for _ in range(rng.randint(0, 3)):
                if rng.random() < 0.15:
                    parts.append(ImagePart(url="https://example.com/a.png"))
                else:  # from empty to past PREFIX_CHARS, so every branch of the budget is taken
                    n = rng.choice([0, 3, 50, 63, 64, 65, 500, 3000, PREFIX_CHARS + 100])
                    text = " ".join(rng.choice(words) for _ in range(n // 5 + 1))[:n]
                    parts.append(TextPart(text))
            args = f'{{"q": "{case}"}}'
            calls = [ToolCall(id="c", name="lookup", arguments=args)] if rng.random() < 0.2 else []
            msgs.append(Message(role="user", content=list(parts), tool_calls=calls))
        req = ChatRequest(model="gpt-4o", messages=msgs)
        for encoding in ("o200k_base", "cl100k_base"):
            _counted.clear()
            expected = [_counted_with_one_budget(req, encoding) for _ in range(2)]  # the 2nd from the cache
            _counted.clear()
            assert [chat_prompt_tokens(req, encoding) for _ in range(2)] == expected, case


def test_call_limits_build_each_limits_item_with_this_requests_costs() -> None:
    s = Settings.model_validate({"limits": {"rpm": 60, "rph": 1000, "tpm": 10_000, "concurrency": 5,
                                            "tokens_per_month": 10**6, "spend_per_day": 2.5}})  # fmt: skip
    p = Policy(s)
    k = key()
    call = p.for_call(k, "chat")
    assert call is not None and call.counts_tokens and call.prices and call.fails_closed
    now = datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp()
    for tokens, nano, slot in ((100, 5_000, 330.0), (7, 0, 90.0), (100, 5_000, 330.0)):
        expected = [
            item("r", "sg:l:{key_x}:rps", 50, 1, 1),
            item("c", "sg:l:{key_x}:concurrency", 5, slot, 1),
            item("r", "sg:l:{key_x}:rpm", 60, 60, 1),
            item("r", "sg:l:{key_x}:rph", 1000, 3600, 1),
            item("r", "sg:l:{key_x}:tpm", 10_000, 60, tokens),
            item("q", "sg:l:{key_x}:tokens_per_month:2026-11", 10**6, 6.5 * 86400, tokens),
            item("q", "sg:l:{key_x}:spend_per_day:2026-11-24", 2_500_000_000, 43200, nano),
        ]
        assert call.items(tokens, nano, slot, now) == expected
        assert (
            items_for(k.id, p.specs(k, "chat"), tokens=tokens, nano_usd=nano, slot_seconds=slot, now=now)
            == expected
        )
        # Settled at: requests and slots one each, token limits the tokens, spend the nano-USD.
        assert list(call.settled(90, 4_000)) == [1, 1, 1, 1, 90, 90, 4_000]
    assert Policy(Settings()).for_call(key(rps="unlimited", concurrency="unlimited"), "chat") is None
    one = Policy(Settings()).for_call(key(concurrency="unlimited", rps=5), "chat")
    assert one is not None and list(one.settled(90, 4_000)) == [1]  # a single item: still a sequence


def test_headers_report_the_tightest_of_several_request_and_token_rates() -> None:
    s = Settings.model_validate({"limits": {"rpm": 60, "rph": 100, "endpoints": {"chat": {"tpm": 500}},
                                            "tpm": 1000}})  # fmt: skip
    call = Policy(s).for_call(key(), "chat")
    assert call is not None and call.req_index == -2 and call.tok_index == -2
    names = [sp.name for sp in call.specs]
    remaining = [0.0] * len(names)
    for name, left in (("rps", 40), ("rpm", 59), ("rph", 12), ("tpm", 900), ("chat.tpm", 480)):
        remaining[names.index(name)] = left
    h = dict(rate_headers(call, Decision(True, -1, 0.0, remaining, [0.5] * len(names))))
    assert h[b"x-ratelimit-limit-requests"] == b"100" and h[b"x-ratelimit-remaining-requests"] == b"12"
    assert h[b"x-ratelimit-limit"] == b"100" and h[b"x-ratelimit-reset"] == b"1"
    assert h[b"x-ratelimit-limit-tokens"] == b"500" and h[b"x-ratelimit-remaining-tokens"] == b"480"
    assert h[b"x-ratelimit-reset-tokens"] == h[b"x-ratelimit-reset-requests"] == b"500ms"
