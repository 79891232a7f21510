"""The fake Claude: deterministic answers, usage with a prompt-cache simulation, bodies and events.

The same conventions as the fake OpenAI model, so cross-provider tests can compare content:
``echo: <last user text>`` (`` (saw K image(s))`` appended), tool calls for the tools named after
"call" in the last user text, ``tool results: name=result; ...`` after tool results, JSON built
from the schema for structured outputs. Tokens are whitespace-separated words.

Prompt caching: every ``cache_control`` breakpoint (or, for the top-level ``cache_control``, the
last block) caches the prompt prefix up to it, once that prefix has at least ``min_tokens``
tokens; a later request whose prefix matches a cached one reads it. Prefix order is Anthropic's:
tools, system, messages.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes._anthropic_validate import MessagesRequest
from tests.fakes._schema import sample_value
from tests.fakes._text import count_tokens, group_words, random_id, split_words

TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 85
ARGUMENT_FRAGMENT_CHARS = 8


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _block_tokens(b: dict[str, Any]) -> int:
    t = b.get("type")
    if t == "text":
        return count_tokens(b["text"])
    if t == "image":
        return TOKENS_PER_IMAGE
    if t == "tool_use":
        return count_tokens(b["name"]) + count_tokens(json.dumps(b["input"]))
    if t == "tool_result":
        return count_tokens(_text(b.get("content")))
    return count_tokens(json.dumps(b))


@dataclass
class PromptCache:
    min_tokens: int = 1024
    entries: dict[str, str] = field(default_factory=dict)  # prefix hash -> ttl

    def usage(self, req: MessagesRequest) -> tuple[int, int, int, int]:
        """(input_tokens, cache_read, cache_creation_5m, cache_creation_1h) for ``req``."""
        segments: list[tuple[bytes, int, Any]] = []
        for t in req.tools:
            segments.append((orjson.dumps(t), count_tokens(json.dumps(t)), t.get("cache_control")))
        for b in req.system:
            segments.append((orjson.dumps(b), count_tokens(b["text"]), b.get("cache_control")))
        for m in req.messages:
            for k, b in enumerate(m["content"]):
                overhead = TOKENS_PER_MESSAGE if k == 0 else 0
                key = orjson.dumps({"role": m["role"], "block": b})
                segments.append((key, _block_tokens(b) + overhead, b.get("cache_control")))
            if not m["content"]:
                segments.append((orjson.dumps(m), TOKENS_PER_MESSAGE, None))
        total = sum(s[1] for s in segments)
        breaks = [i for i, s in enumerate(segments) if s[2]]
        if req.cache_control and segments:
            breaks.append(len(segments) - 1)
        if not breaks:
            return total, 0, 0, 0
        digest = hashlib.sha256()
        prefix_keys: list[str] = []
        prefix_tokens: list[int] = []
        running = 0
        for key, tokens, _ in segments:
            digest.update(key)
            running += tokens
            prefix_keys.append(digest.copy().hexdigest())
            prefix_tokens.append(running)
        last = max(breaks)
        read = next((prefix_tokens[i] for i in range(last, -1, -1) if prefix_keys[i] in self.entries), 0)
        created = 0
        ttl = (segments[last][2] or req.cache_control or {}).get("ttl") or "5m"
        if prefix_tokens[last] >= self.min_tokens:
            created = prefix_tokens[last] - read
            for i in breaks:
                if prefix_tokens[i] >= self.min_tokens:
                    self.entries.setdefault(prefix_keys[i], ttl)
        return total - read - created, read, created if ttl == "5m" else 0, created if ttl == "1h" else 0


@dataclass(frozen=True)
class Answer:
    id: str
    model: str
    blocks: tuple[dict[str, Any], ...]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]


def _custom_tools(req: MessagesRequest) -> list[dict[str, Any]]:
    return [t for t in req.tools if t.get("type") in (None, "custom")]


def _mentioned(text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    match = re.search(r"\bcall\b", text)
    if match is None:
        return []
    tail = text[match.end() :]
    found = []
    for tool in tools:
        hit = re.search(rf"(?<![\w-]){re.escape(tool['name'])}(?![\w-])", tail)
        if hit:
            found.append((hit.start(), tool))
    return [tool for _, tool in sorted(found, key=lambda item: item[0])]


def _last_user(req: MessagesRequest) -> tuple[str, int, list[dict[str, Any]]]:
    """(text, image count, tool_result blocks) of the last user turn."""
    for m in reversed(req.messages):
        if m["role"] == "user":
            blocks = m["content"]
            text = " ".join(b["text"] for b in blocks if b.get("type") == "text")
            images = sum(1 for b in blocks if b.get("type") == "image")
            return text, images, [b for b in blocks if b.get("type") == "tool_result"]
    return "", 0, []


def _plan_tools(req: MessagesRequest, text: str, answering: bool) -> list[dict[str, Any]]:
    tools = _custom_tools(req)
    choice = req.tool_choice or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return []
    if choice["type"] == "tool":
        return [t for t in tools if t["name"] == choice["name"]]
    called = [] if answering else _mentioned(text, tools)
    if not called and choice["type"] == "any":
        called = _mentioned(text, tools) or tools[:1]
    return called[:1] if choice.get("disable_parallel_tool_use") else called


def _tool_names(req: MessagesRequest) -> dict[str, str]:
    return {b["id"]: b["name"] for m in req.messages for b in m["content"] if b.get("type") == "tool_use"}


def _answer_text(req: MessagesRequest, text: str, images: int, results: list[dict[str, Any]]) -> str:
    if results and not text:
        names = _tool_names(req)
        listing = "; ".join(f"{names.get(r['tool_use_id'], r['tool_use_id'])}={_text(r.get('content'))}"
                            for r in results)  # fmt: skip
        answer = f"tool results: {listing}"
    else:
        answer = "echo:" + (" " + text if text else "")
        if images:
            answer += f" (saw {images} image{'s' if images != 1 else ''})"
    if req.output_schema is not None:
        return json.dumps(sample_value(req.output_schema, text=answer, all_properties=True))
    return answer


def _limit(text: str, req: MessagesRequest) -> tuple[str, str, str | None]:
    hits = [(text.find(s), s) for s in req.stop_sequences if s in text]
    if hits:
        at, seq = min(hits)
        return text[:at], "stop_sequence", seq
    pieces = split_words(text)
    if len(pieces) > req.max_tokens:
        return "".join(pieces[: req.max_tokens]), "max_tokens", None
    return text, "end_turn", None


def generate(req: MessagesRequest, cache: PromptCache) -> Answer:
    text, images, results = _last_user(req)
    calls = _plan_tools(req, text, bool(results) and not text)
    blocks: list[dict[str, Any]] = []
    stop_sequence = None
    if calls:
        for tool in calls:
            args = sample_value(tool["input_schema"], text="sample", all_properties=False)
            blocks.append({"type": "tool_use", "id": random_id("toolu_01", 22), "name": tool["name"],
                           "input": args if isinstance(args, dict) else {}})  # fmt: skip
        stop_reason = "tool_use"
    else:
        answer, stop_reason, stop_sequence = _limit(_answer_text(req, text, images, results), req)
        if answer:
            blocks.append({"type": "text", "text": answer})
    output = sum(_block_tokens(b) for b in blocks)
    inp, read, created_5m, created_1h = cache.usage(req)
    usage = {
        "input_tokens": inp,
        "cache_creation_input_tokens": created_5m + created_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created_5m, "ephemeral_1h_input_tokens": created_1h},
        "output_tokens": output,
        "service_tier": "standard",
    }
    return Answer(random_id("msg_01", 22), req.model, tuple(blocks), stop_reason, stop_sequence, usage)


def message_body(a: Answer) -> dict[str, Any]:
    return {
        "id": a.id,
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": list(a.blocks),
        "stop_reason": a.stop_reason,
        "stop_sequence": a.stop_sequence,
        "usage": a.usage,
    }


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING = sse("ping", {"type": "ping"})


def stream_events(a: Answer, *, words_per_chunk: int) -> list[bytes]:
    """Every event of the answer's stream, in the order Anthropic sends them."""
    start = {**message_body(a), "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**a.usage, "output_tokens": 1}}  # fmt: skip
    events = [sse("message_start", {"type": "message_start", "message": start})]
    for i, b in enumerate(a.blocks):
        opening = {"type": "text", "text": ""} if b["type"] == "text" else {**b, "input": {}}
        events.append(
            sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": opening})
        )
        if i == 0:
            events.append(PING)
        if b["type"] == "text":
            deltas = [
                {"type": "text_delta", "text": piece} for piece in group_words(b["text"], words_per_chunk)
            ]
        else:
            args = json.dumps(b["input"], separators=(",", ":"))
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": args[k : k + ARGUMENT_FRAGMENT_CHARS]}
                       for k in range(0, len(args), ARGUMENT_FRAGMENT_CHARS)]  # fmt: skip
        events += [
            sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
            for d in deltas
        ]
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    if not a.blocks:
        events.append(PING)
    final_usage = {k: a.usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                           "cache_read_input_tokens", "output_tokens")}  # fmt: skip
    stop = {"stop_reason": a.stop_reason, "stop_sequence": a.stop_sequence}
    events.append(sse("message_delta", {"type": "message_delta", "delta": stop, "usage": final_usage}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def error_event(error_type: str, message: str, request_id: str) -> bytes:
    return sse(
        "error",
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id},
    )


def count_input_tokens(req: MessagesRequest) -> int:
    return PromptCache(min_tokens=1 << 62).usage(req)[0]
