"""What a request may consume at most, reserved before it goes upstream: prompt tokens counted
with a real BPE tokenizer, plus the most completion tokens it may get, priced from the model table.

Tokenizers (the ``bpe-openai`` package, which ships its encodings, so nothing is downloaded at
run time): ``o200k_base`` for gpt-4o, gpt-4.1, gpt-5 and the o-series; ``cl100k_base`` for older
OpenAI models and, as a documented approximation, for every other family (Claude, Gemini, Llama,
Mistral tokenize differently; their counts are within a few tens of percent). The count is made
once per request, per message, remembering the counts of texts that recur (a system prompt); at
most ``PREFIX_CHARS`` new characters are counted per request, the rest extrapolated from the
tokens per character seen so far, so a huge prompt costs no more than a small one to count.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from stellargate.core.embeddings import EmbeddingsRequest
from stellargate.core.images import ImagesRequest
from stellargate.core.request import ChatRequest, ImagePart, TextPart
from stellargate.dialects.openai_completions import DIALECT as LEGACY_COMPLETIONS
from stellargate.dialects.openai_completions import generations, prompt_list
from stellargate.pipeline.context import Context
from stellargate.providers.base import Target

PREFIX_CHARS = 8192
TOKENS_PER_MESSAGE = 4  # role and separators, as OpenAI's chat format adds them
TOKENS_PER_IMAGE = 1600  # a high-detail image's worst case is near this on every provider
CACHE_ENTRIES = 2048  # remembered counts per encoding (at most PREFIX_CHARS characters each: ~16 MB)
DEFAULT_MAX_COMPLETION = 4096  # neither the request nor the model says how long an answer may be


class _Counter(Protocol):
    def count(self, text: str) -> int: ...


_tokenizers: dict[str, _Counter] = {}


def _load(encoding: str) -> _Counter:
    """The Rust binding alone. Importing the ``bpe_openai`` package would also build its
    tiktoken-compatible tables in Python (0.6 s, ~70 MB); the binding's own ``count()`` needs none
    of that and costs about 1 µs for a short prompt (20 µs through the compatible wrapper)."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bpe-openai package is not installed")
    (folder,) = list(spec.submodule_search_locations)[:1]
    path = next(Path(folder).glob("_bindings*.so"))
    bspec = importlib.util.spec_from_file_location("bpe_openai._bindings", path)
    assert bspec is not None and bspec.loader is not None
    module = importlib.util.module_from_spec(bspec)
    bspec.loader.exec_module(module)
    tok: _Counter = module.tokenizer_for_encoding(encoding)
    return tok


def is_ready(encoding: str) -> bool:
    return encoding in _tokenizers


async def ready(encoding: str) -> None:
    """Load a tokenizer (~50 ms) in a thread the first time it is needed, not on the event loop."""
    if encoding not in _tokenizers:
        _tokenizers[encoding] = await asyncio.to_thread(_load, encoding)


def _tokenizer(encoding: str) -> _Counter:
    tok = _tokenizers.get(encoding)
    if tok is None:
        tok = _tokenizers[encoding] = _load(encoding)
    return tok


@lru_cache(maxsize=1024)
def encoding_for(model: str) -> str:
    m = model.rsplit("/", 1)[-1].lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")):
        return "o200k_base"
    return "cl100k_base"


def count_text(text: str, encoding: str) -> int:
    if not text:
        return 0
    tok = _tokenizer(encoding)
    if len(text) <= PREFIX_CHARS:
        return int(tok.count(text))
    head = tok.count(text[:PREFIX_CHARS])
    return math.ceil(head * len(text) / PREFIX_CHARS)


_counted: dict[str, dict[str, int]] = {}  # per encoding: text -> its tokens


def _counts(encoding: str) -> dict[str, int]:
    cache = _counted.get(encoding)
    if cache is None:
        cache = _counted[encoding] = {}
    return cache


class _Budget:
    """Counts the texts of one request, at most PREFIX_CHARS new characters of them."""

    __slots__ = ("cache", "chars", "encoding", "left", "tok", "tokens")

    def __init__(self, encoding: str, left: int = PREFIX_CHARS, chars: int = 0, tokens: int = 0) -> None:
        self.encoding = encoding
        self.tok = _tokenizer(encoding)
        self.cache = _counts(encoding)
        self.left = left  # new characters it may still count
        self.chars, self.tokens = chars, tokens  # what was counted, for the ratio of the rest

    def count(self, text: str) -> int:
        n = len(text)
        if n < 64 or n > PREFIX_CHARS or n > self.left:
            found = self.cache.get(text) if 64 <= n <= PREFIX_CHARS else None
            # Over the budget: extrapolated, and not remembered.
            return found if found is not None else self._fresh(text)
        cache = self.cache
        found = cache.get(text)
        if found is None:
            found = self._fresh(text)
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()
            cache[text] = found
        return found

    def _fresh(self, text: str) -> int:
        n = len(text)
        if n <= self.left:
            self.left -= n
            t = int(self.tok.count(text)) if text else 0
        elif self.left >= 1024:
            head, self.left = text[: self.left], 0
            t = math.ceil(count_text(head, self.encoding) * n / len(head))
        else:
            ratio = self.tokens / self.chars if self.chars else 0.3
            return math.ceil(n * ratio)
        self.chars += n
        self.tokens += t
        return t


def chat_prompt_tokens(req: ChatRequest, encoding: str) -> int:
    tokens = TOKENS_PER_MESSAGE * len(req.messages) + 3
    # The common case inline (it runs for every request under a token or spend limit): plain text
    # parts, each remembered or counted whole. Anything else goes through a _Budget.
    tok = _tokenizer(encoding)
    cache = _counts(encoding)
    left, chars, counted = PREFIX_CHARS, 0, 0  # as in _Budget
    b: _Budget | None = None
    for m in req.messages:
        for p in m.content:
            if type(p) is not TextPart:
                if isinstance(p, ImagePart):
                    tokens += TOKENS_PER_IMAGE
                elif (text := getattr(p, "text", None)) is not None:
                    b = b or _Budget(encoding, left, chars, counted)
                    tokens += b.count(text)
                continue
            text = p.text
            n = len(text)
            if b is None and n <= left:
                found = cache.get(text) if n >= 64 else None
                if found is None:
                    found = int(tok.count(text)) if n else 0
                    left, chars, counted = left - n, chars + n, counted + found
                    if n >= 64:
                        if len(cache) >= CACHE_ENTRIES:
                            cache.clear()
                        cache[text] = found
                tokens += found
            else:
                b = b or _Budget(encoding, left, chars, counted)
                tokens += b.count(text)
        if m.tool_calls:
            b = b or _Budget(encoding, left, chars, counted)
            for t in m.tool_calls:
                tokens += b.count(t.name) + b.count(t.arguments)
    if req.tools:
        b = b or _Budget(encoding, left, chars, counted)
        for tool in req.tools:
            tokens += b.count(f"{tool.name} {tool.description or ''} {tool.parameters or ''}")
    return tokens


# Families whose own encoding we count with (OpenAI's): their reports match our count but for
# framing, so reservations start at our count. Every other family starts with a margin.
_EXACT = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-")
APPROX_MARGIN = 1.5  # above what Claude's, Gemini's, Llama's and Mistral's tokenizers give for cl100k's count
MAX_MARGIN = 4.0  # a token is at least one UTF-8 byte: cl100k averages about four bytes a token
MIN_COUNTED = 200  # below this, fixed overheads (framing, a provider's hidden tool prompt) drive the ratio
LEARN_AFTER = 8  # reports before the learned ratio replaces the starting margin
WINDOW = 256  # reports per window; the highest ratio of this window and the last one is used


class _Learned:
    """One model's scale: ``factor`` (what reservations use, kept derived from the rest) and the
    highest ratios of the current and the last window."""

    __slots__ = ("factor", "high", "in_window", "last_high", "seen", "start")

    def __init__(self, start: float) -> None:
        self.factor = self.start = start
        self.high = self.last_high = 0.0
        self.in_window = self.seen = 0


class PromptScale:
    """Per upstream model, what to multiply the prompt count by so that the reservation covers
    what the provider will report: learned from the usage each answer reports (the highest ratio
    of reported to counted over the last 256 to 512 answers), so a family we count only
    approximately (cl100k for Claude, Gemini, Llama) does not let a budget be overspent by the
    difference between the two tokenizers. Never below 1: counting more is only conservative."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: dict[str, _Learned] = {}

    @staticmethod
    def initial(model: str) -> float:
        m = model.rsplit("/", 1)[-1].lower()
        return 1.0 if m.startswith(_EXACT) else APPROX_MARGIN

    def factor(self, model: str) -> float:
        st = self._state.get(model)
        return st.factor if st is not None else self._new(model).factor

    def _new(self, model: str) -> _Learned:
        # Made on a model's first request, so later ones look it up instead of classifying its name.
        if len(self._state) >= 10_000:
            self._state.clear()
        st = self._state[model] = _Learned(self.initial(model))
        return st

    def observe(self, model: str, counted: int, reported: int) -> None:
        if counted < MIN_COUNTED or reported <= 0:
            return
        st = self._state.get(model) or self._new(model)
        ratio = min(reported / counted, MAX_MARGIN)
        if ratio > st.high:
            st.high = ratio
        st.in_window += 1
        st.seen += 1
        if st.in_window >= WINDOW:
            st.last_high, st.high, st.in_window = st.high, 0.0, 0
        high = max(1.0, st.high, st.last_high)
        st.factor = high if st.seen >= LEARN_AFTER else max(st.start, high)


def choices(req: ChatRequest) -> int:
    """How many answers a request may be billed for, each up to the most completion tokens."""
    return generations(req) if req.dialect == LEGACY_COMPLETIONS else req.n or 1


def _legacy_prompts(req: ChatRequest, encoding: str) -> int:
    """The legacy endpoint's prompts that are not one text (a list, or token arrays): texts
    counted, token arrays taken at their length."""
    b = _Budget(encoding)
    return sum(
        len(p) if isinstance(p, list) else b.count(p) if isinstance(p, str) else 0 for p in prompt_list(req)
    )


def max_completion_tokens(req: ChatRequest, target: Target, prompt: int) -> int:
    if req.max_tokens is not None:
        return req.max_tokens
    ms = target.model
    if ms is not None and ms.max_output_tokens is not None:
        return ms.max_output_tokens
    if ms is not None and ms.context_window is not None:
        return max(0, ms.context_window - prompt)
    return DEFAULT_MAX_COMPLETION


def worst_case(
    payload: Any, req: ChatRequest | None, target: Target, encoding: str | None = None
) -> tuple[int, int, int]:
    """(prompt tokens, the most completion tokens, images) this request may consume.
    ``encoding``: the target's, when the caller has it already."""
    encoding = encoding or encoding_for(target.upstream_model)
    if req is not None:
        prompt = chat_prompt_tokens(req, encoding)
        if req.dialect == LEGACY_COMPLETIONS and not req.messages:
            prompt += _legacy_prompts(req, encoding)
        return prompt, max_completion_tokens(req, target, prompt) * choices(req), 0
    if isinstance(payload, EmbeddingsRequest):
        b = _Budget(encoding)
        prompt = sum(b.count(i) if isinstance(i, str) else len(i) for i in payload.inputs)
        return prompt, 0, 0
    if isinstance(payload, ImagesRequest):
        return count_text(payload.prompt, encoding), 0, payload.n
    return 0, 0, 0


async def count_prompt_tokens(ctx: Context) -> int:
    """The chat prompt's tokens: the count a stage already made, else counted now (and kept on the
    context), the tokenizer loaded off the event loop the first time."""
    n = ctx.counted_prompt_tokens()
    if n is not None:
        return n
    req, target = ctx.request, ctx.target
    assert req is not None and target is not None
    encoding = encoding_for(target.upstream_model)
    if not is_ready(encoding):
        await ready(encoding)
    ctx.prompt_tokens = n = chat_prompt_tokens(req, encoding)
    return n
