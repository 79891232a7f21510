"""PromptScale: how much a reservation scales the prompt count up, learned per upstream model from
the usage its answers report."""

from __future__ import annotations

from stellargate.pipeline.estimate import (
    APPROX_MARGIN,
    LEARN_AFTER,
    MAX_MARGIN,
    MIN_COUNTED,
    WINDOW,
    PromptScale,
)


def test_families_we_count_exactly_start_at_one_the_others_with_a_margin() -> None:
    s = PromptScale()
    for model in ("gpt-4o", "openai/gpt-4.1-mini", "o3-mini", "text-embedding-3-small"):
        assert s.factor(model) == 1.0, model
    for model in ("claude-sonnet-4-5", "gemini-2.5-pro", "meta-llama/Llama-3.1-70B", "mistral-large"):
        assert s.factor(model) == APPROX_MARGIN, model


def test_it_learns_the_highest_ratio_reported_and_never_goes_below_one() -> None:
    s = PromptScale()
    for _ in range(LEARN_AFTER - 1):
        s.observe("claude-x", 1000, 1100)
    assert s.factor("claude-x") == APPROX_MARGIN  # too few reports yet to drop the starting margin
    s.observe("claude-x", 1000, 1250)
    assert s.factor("claude-x") == 1.25  # the highest seen, not the last or the mean
    s.observe("claude-x", 1000, 1050)
    assert s.factor("claude-x") == 1.25
    s.observe("claude-x", 1000, 2000)
    assert s.factor("claude-x") == 2.0  # a report above the start margin raises it at once

    for _ in range(LEARN_AFTER):
        s.observe("llama", 1000, 700)  # a provider counting fewer than we do
    assert s.factor("llama") == 1.0


def test_old_highs_age_out_after_two_windows() -> None:
    s = PromptScale()
    s.observe("gpt-4o", 1000, 1300)  # an outlier
    for _ in range(2 * WINDOW):
        s.observe("gpt-4o", 1000, 1020)
    assert s.factor("gpt-4o") == 1.02


def test_small_counts_and_absurd_reports_do_not_drive_it() -> None:
    s = PromptScale()
    for _ in range(LEARN_AFTER):
        s.observe("gpt-4o", MIN_COUNTED - 1, 400)  # mostly framing or a hidden tool prompt
        s.observe("gpt-4o", 1000, 0)  # no report
    assert s.factor("gpt-4o") == 1.0
    s.observe("claude-x", 1000, 100_000)
    assert s.factor("claude-x") == MAX_MARGIN
