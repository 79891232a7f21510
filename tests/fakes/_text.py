"""Deterministic "tokens" (whitespace-separated words), ids, and text helpers shared by the endpoints."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

_ALPHANUM = string.ascii_letters + string.digits
_WORD = re.compile(r"\s*\S+")


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def split_words(text: str) -> list[str]:
    """Split into word pieces that keep their leading whitespace, so `"".join(pieces) == text`."""
    pieces = _WORD.findall(text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def group_words(text: str, per_group: int) -> list[str]:
    pieces = split_words(text)
    return ["".join(pieces[i : i + per_group]) for i in range(0, len(pieces), per_group)]


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUM) for _ in range(length))


def parts_text(content: Any) -> tuple[str, int]:
    """(text, image count) of a message's content: a string, or an array of content parts."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    texts += [p["refusal"] for p in content if isinstance(p, dict) and isinstance(p.get("refusal"), str)]
    images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return " ".join(texts), images


def prompt_text(prompt: Any) -> str:
    """Legacy completions accept a string, or an array of token ids (shown as the ids)."""
    if isinstance(prompt, str):
        return prompt
    return " ".join(str(token) for token in prompt)
