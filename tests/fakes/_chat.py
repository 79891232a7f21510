"""The fake model: deterministic chat answers (text or tool calls), usage, and the response bodies."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from tests.fakes._chat_request import ChatRequest, FunctionTool
from tests.fakes._schema import sample_value
from tests.fakes._text import count_tokens, group_words, parts_text, random_id, split_words

TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 85
ARGUMENT_FRAGMENT_CHARS = 8


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Choice:
    index: int
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str


@dataclass(frozen=True)
class ChatResult:
    id: str
    created: int
    model: str
    system_fingerprint: str
    choices: tuple[Choice, ...]
    usage: dict[str, Any]


def generate(req: ChatRequest, *, created: int, system_fingerprint: str) -> ChatResult:
    calls = plan_tool_calls(req)
    choices = tuple(_choice(req, index, calls) for index in range(req.n))
    completion = sum(_completion_tokens(choice) for choice in choices)
    return ChatResult(
        id=random_id("chatcmpl-", 29),
        created=created,
        model=req.model,
        system_fingerprint=system_fingerprint,
        choices=choices,
        usage=chat_usage(prompt_tokens(req.messages), completion),
    )


def _choice(req: ChatRequest, index: int, calls: list[FunctionTool]) -> Choice:
    if calls:
        tool_calls = tuple(_tool_call(tool) for tool in calls)
        return Choice(index, None, tool_calls, "tool_calls")
    text, finish = apply_limits(_formatted_answer(req, index), req.stop, req.max_tokens)
    return Choice(index, text, (), finish)


def _tool_call(tool: FunctionTool) -> ToolCall:
    arguments = sample_value(tool.parameters, text="sample", all_properties=False)
    if not isinstance(arguments, dict):
        arguments = {}
    return ToolCall(random_id("call_", 24), tool.name, json.dumps(arguments, separators=(",", ":")))


def plan_tool_calls(req: ChatRequest) -> list[FunctionTool]:
    """Which tools the fake model calls: forced / required / "call NAME" in the last user message."""
    if not req.tools or req.tool_choice == "none":
        return []
    if req.forced_tool is not None:
        return [tool for tool in req.tools if tool.name == req.forced_tool]
    answering_tools = req.messages[-1]["role"] == "tool"
    mentioned = [] if answering_tools else mentioned_tools(last_user_text(req.messages)[0], req.tools)
    if not mentioned and req.tool_choice == "required":
        mentioned = mentioned_tools(last_user_text(req.messages)[0], req.tools) or [req.tools[0]]
    return mentioned if req.parallel_tool_calls else mentioned[:1]


def mentioned_tools(text: str, tools: tuple[FunctionTool, ...]) -> list[FunctionTool]:
    """Tools named after the word "call" ("call get_weather and get_time"), in order of mention."""
    match = re.search(r"\bcall\b", text)
    if match is None:
        return []
    tail = text[match.end() :]
    found: list[tuple[int, FunctionTool]] = []
    for tool in tools:
        hit = re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", tail)
        if hit:
            found.append((hit.start(), tool))
    return [tool for _, tool in sorted(found, key=lambda item: item[0])]


def last_user_text(messages: list[dict[str, Any]]) -> tuple[str, int]:
    for message in reversed(messages):
        if message["role"] == "user":
            return parts_text(message.get("content"))
    return "", 0


def tool_results(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(function name, result text) for the tool messages that end the conversation."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
    results: list[tuple[str, str]] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        name = names.get(message["tool_call_id"], message["tool_call_id"])
        results.append((name, parts_text(message["content"])[0]))
    return list(reversed(results))


def answer_text(req: ChatRequest, index: int) -> str:
    """`echo: <last user text>` (`echoN:` for choice N>0), `(saw K images)` appended; or tool results."""
    if req.messages[-1]["role"] == "tool":
        listing = "; ".join(f"{name}={result}" for name, result in tool_results(req.messages))
        return f"tool results: {listing}"
    text, images = last_user_text(req.messages)
    answer = "echo:" if index == 0 else f"echo{index}:"
    if text:
        answer += " " + text
    if images:
        answer += f" (saw {images} image{'s' if images != 1 else ''})"
    return answer


def _formatted_answer(req: ChatRequest, index: int) -> str:
    text = answer_text(req, index)
    if req.response_format.type == "json_object":
        return json.dumps({"echo": text})
    if req.response_format.type == "json_schema":
        return json.dumps(sample_value(req.response_format.schema, text=text, all_properties=True))
    return text


def apply_limits(text: str, stop: tuple[str, ...], max_tokens: int | None) -> tuple[str, str]:
    """Cut at the first stop sequence, then at max_tokens words ("length")."""
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    pieces = split_words(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        return "".join(pieces[:max_tokens]), "length"
    return text, "stop"


def message_tokens(message: dict[str, Any]) -> int:
    text, images = parts_text(message.get("content"))
    tokens = TOKENS_PER_MESSAGE + count_tokens(text) + TOKENS_PER_IMAGE * images
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        tokens += count_tokens(str(function.get("name", ""))) + count_tokens(
            str(function.get("arguments", ""))
        )
    return tokens


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(message_tokens(m) for m in messages)


def _completion_tokens(choice: Choice) -> int:
    if choice.tool_calls:
        return sum(count_tokens(c.name) + count_tokens(c.arguments) for c in choice.tool_calls)
    return count_tokens(choice.content or "")


def chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _envelope(result: ChatResult, obj: str) -> dict[str, Any]:
    return {
        "id": result.id,
        "object": obj,
        "created": result.created,
        "model": result.model,
        "service_tier": "default",
        "system_fingerprint": result.system_fingerprint,
    }


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.content,
        "refusal": None,
        "annotations": [],
    }
    if choice.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in choice.tool_calls
        ]
    return message


def completion_body(result: ChatResult) -> dict[str, Any]:
    body = _envelope(result, "chat.completion")
    body["choices"] = [
        {"index": c.index, "message": _message(c), "logprobs": None, "finish_reason": c.finish_reason}
        for c in result.choices
    ]
    body["usage"] = result.usage
    return body


def _choice_deltas(choice: Choice, words_per_chunk: int) -> list[dict[str, Any]]:
    """The deltas of one choice, first to last, ending with the empty finish delta."""
    if choice.tool_calls:
        deltas = _tool_call_deltas(choice.tool_calls)
        deltas[0] = {"role": "assistant", "content": None, **deltas[0], "refusal": None}
    else:
        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": piece} for piece in group_words(choice.content or "", words_per_chunk)]
    return deltas


def _tool_call_deltas(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [head]})
        for start in range(0, len(call.arguments), ARGUMENT_FRAGMENT_CHARS):
            fragment = call.arguments[start : start + ARGUMENT_FRAGMENT_CHARS]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    return deltas


def _choice_entries(choice: Choice, words_per_chunk: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [
        {"index": choice.index, "delta": delta, "logprobs": None, "finish_reason": None}
        for delta in _choice_deltas(choice, words_per_chunk)
    ]
    entries.append(
        {"index": choice.index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason}
    )
    return entries


def chunk_bodies(
    result: ChatResult, *, words_per_chunk: int, include_usage: bool, obfuscate: bool
) -> list[dict[str, Any]]:
    """Every `chat.completion.chunk` of the stream; choices interleave round-robin as with n > 1."""
    per_choice = [_choice_entries(c, words_per_chunk) for c in result.choices]
    entries = [lst[i] for i in range(max(map(len, per_choice))) for lst in per_choice if i < len(lst)]
    chunks = [{**_envelope(result, "chat.completion.chunk"), "choices": [entry]} for entry in entries]
    if include_usage:
        for chunk in chunks:
            chunk["usage"] = None
        chunks.append({**_envelope(result, "chat.completion.chunk"), "choices": [], "usage": result.usage})
    if obfuscate:
        for chunk in chunks:
            chunk["obfuscation"] = random_id("", 2 + secrets.randbelow(14))
    return chunks
