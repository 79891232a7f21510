"""Anthropic Messages request -> canonical ChatRequest, validated the way Anthropic validates.

Errors are Anthropic's: HTTP 400 ``invalid_request_error`` with a message that starts with the
dotted path of the offending field (``messages.1.content.0.type: ...``), also given as ``param``.

Mapping: ``system`` (string or text blocks) -> a leading system message; ``tool_result`` blocks
-> ``tool`` messages placed before the rest of their user turn; ``tool_use`` -> assistant tool
calls (arguments = the input as JSON text); images (base64 / url) -> ImagePart; ``tool_choice``
auto/any/tool/none -> auto/required/function/none, ``disable_parallel_tool_use`` ->
``parallel_tool_calls: false``; ``output_config.format`` -> ``response_format: json_schema``;
``metadata.user_id`` -> ``user``; ``stop_sequences`` -> ``stop``; ``top_k`` -> ``extra``.

For providers other than Anthropic (the translated path) some fields cannot be carried:
``thinking`` / ``redacted_thinking`` blocks of earlier turns are dropped, as are the hints in
``DROPPED`` (prompt caching, service tier, thinking budget, effort: none changes what a
correct answer is). Other fields the canonical model has no place for (``documents``, MCP
servers, containers ...) stay in ``extra`` / ``OtherPart``, so that a provider that cannot
serve them refuses the request by name rather than ignoring them; server tools are refused before
the request leaves (``untranslatable``). The identity path forwards the body as it came.
"""

from __future__ import annotations

from typing import Any

import orjson

from stellargate.core.request import (
    ChatRequest,
    ImagePart,
    Message,
    OtherPart,
    Part,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from stellargate.dialects.validate import is_integer, is_number
from stellargate.errors import InvalidRequest

KNOWN = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p", "top_k",
        "metadata", "stream", "tools", "tool_choice", "output_config",
    }
)  # fmt: skip
# Hints a non-Anthropic provider has no use for; the identity path still forwards them.
DROPPED = frozenset(
    {
        "cache_control",
        "service_tier",
        "inference_geo",
        "speed",
        "diagnostics",
        "thinking",
        "context_management",
    }
)
# Block types Anthropic accepts in messages; those the canonical model cannot hold become OtherPart.
BLOCK_TYPES = (
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
    "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload",
    "mcp_tool_use", "mcp_tool_result",
)  # fmt: skip
_IGNORED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def invalid(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path)


def _required(path: str) -> InvalidRequest:
    return invalid(path, "Field required")


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid(path, "Input should be a valid string")
    return value


def _dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path, "Input should be a valid dictionary or object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(path, "Input should be a valid list")
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float | None) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if not is_number(v):
        raise invalid(key, "Input should be a valid number")
    if v < lo:
        raise invalid(key, f"Input should be greater than or equal to {lo:g}")
    if hi is not None and v > hi:
        raise invalid(key, f"Input should be less than or equal to {hi:g}")
    return float(v)


def _int(value: Any, path: str, lo: int) -> int:
    if not is_integer(value):
        raise invalid(path, "Input should be a valid integer")
    if value < lo:
        raise invalid(path, f"Input should be greater than or equal to {lo}")
    return value


def _image(block: dict[str, Any], path: str) -> ImagePart:
    src = _dict(block.get("source"), f"{path}.source")
    kind = src.get("type")
    if kind == "base64":
        media = src.get("media_type")
        if media not in MEDIA_TYPES:
            allowed = ", ".join(f"'{m}'" for m in MEDIA_TYPES[:-1]) + f" or '{MEDIA_TYPES[-1]}'"
            raise invalid(f"{path}.source.base64.media_type", f"Input should be {allowed}")
        return ImagePart(data=_str(src.get("data"), f"{path}.source.base64.data"), media_type=media)
    if kind == "url":
        return ImagePart(url=_str(src.get("url"), f"{path}.source.url.url"))
    raise invalid(
        f"{path}.source.type",
        f"Input tag '{kind}' found using 'type' does not match any of the "
        "expected tags: 'base64', 'url', 'file'",
    )


def _text_of(content: Any, path: str) -> list[Part]:
    """A tool_result's content: a string or text / image blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for j, b in enumerate(_list(content, path)):
        b = _dict(b, f"{path}.{j}")
        if b.get("type") == "text":
            parts.append(TextPart(_str(b.get("text"), f"{path}.{j}.text")))
        elif b.get("type") == "image":
            parts.append(_image(b, f"{path}.{j}"))
        else:
            parts.append(OtherPart(b))
    return parts


def _blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for j, b in enumerate(_list(content, path)):
        b = _dict(b, f"{path}.{j}")
        t = b.get("type")
        if t not in BLOCK_TYPES:
            tags = ", ".join(f"'{x}'" for x in BLOCK_TYPES)
            raise invalid(
                f"{path}.{j}.type",
                f"Input tag '{t}' found using 'type' does not match any of the expected tags: {tags}",
            )
        if t == "text" and b.get("text") == "":
            raise invalid("messages", "text content blocks must be non-empty")
        out.append(b)
    return out


def _message(m: Any, i: int, last: bool, out: list[Message]) -> None:
    path = f"messages.{i}"
    m = _dict(m, path)
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise invalid(f"{path}.role", "Input should be 'user' or 'assistant'")
    if "content" not in m:
        raise _required(f"{path}.content")
    parts: list[Part] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    blocks = _blocks(m["content"], f"{path}.content")
    if not blocks and not (last and role == "assistant"):
        raise invalid(
            path, "all messages must have non-empty content except for the optional final assistant message"
        )
    for j, b in enumerate(blocks):
        bp, t = f"{path}.content.{j}", b["type"]
        if t == "text":
            parts.append(TextPart(_str(b.get("text"), f"{bp}.text")))
        elif t == "image":
            parts.append(_image(b, bp))
        elif t == "tool_use" and role == "assistant":
            args = orjson.dumps(_dict(b.get("input", {}), f"{bp}.input")).decode()
            calls.append(
                ToolCall(
                    id=_str(b.get("id"), f"{bp}.id"), name=_str(b.get("name"), f"{bp}.name"), arguments=args
                )
            )
        elif t == "tool_result" and role == "user":
            content = _text_of(b.get("content"), f"{bp}.content")
            if b.get("is_error") is True:
                content.insert(0, TextPart("Error: "))
            tid = _str(b.get("tool_use_id"), f"{bp}.tool_use_id")
            results.append(Message(role="tool", content=content, tool_call_id=tid))
        elif t in ("tool_use", "tool_result"):
            raise invalid(bp, f"'{t}' blocks are not allowed in '{role}' messages")
        elif t not in _IGNORED_BLOCKS:
            parts.append(OtherPart(b))
    out.extend(results)  # tool results answer the previous turn: they come first
    if parts or calls:  # an assistant turn of only thinking blocks says nothing elsewhere
        out.append(Message(role=role, content=parts, tool_calls=calls))


def _system(value: Any) -> Message | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Message(role="system", content=[TextPart(value)]) if value else None
    parts: list[Part] = []
    for j, b in enumerate(_list(value, "system")):
        b = _dict(b, f"system.{j}")
        if b.get("type") != "text":
            raise invalid(f"system.{j}.type", "Input should be 'text'")
        parts.append(TextPart(_str(b.get("text"), f"system.{j}.text")))
    return Message(role="system", content=parts) if parts else None


def server_tool(t: dict[str, Any]) -> bool:
    return t.get("type") not in (None, "custom")


def _tools(value: Any) -> list[Tool] | None:
    if value is None:
        return None
    tools = []
    for i, t in enumerate(_list(value, "tools")):
        t = _dict(t, f"tools.{i}")
        name = _str(t.get("name"), f"tools.{i}.name")
        if server_tool(t):
            continue  # Anthropic-hosted; refused on the translated path by `untranslatable`
        if "input_schema" not in t:
            raise _required(f"tools.{i}.custom.input_schema")
        schema = _dict(t["input_schema"], f"tools.{i}.custom.input_schema")
        desc = t.get("description")
        strict = t.get("strict")
        tools.append(
            Tool(
                name=name,
                description=desc if isinstance(desc, str) else None,
                parameters=schema,
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return tools


def _tool_choice(value: Any) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    tc = _dict(value, "tool_choice")
    kind = tc.get("type")
    parallel = False if tc.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "none":
        return ToolChoice("none"), None
    if kind == "tool":
        return ToolChoice("function", _str(tc.get("name"), "tool_choice.tool.name")), parallel
    raise invalid(
        "tool_choice.type",
        f"Input tag '{kind}' found using 'type' does not match any of the "
        "expected tags: 'auto', 'any', 'tool', 'none'",
    )


def _output_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    fmt = _dict(value, "output_config").get("format")
    if fmt is None:
        return None
    fmt = _dict(fmt, "output_config.format")
    if fmt.get("type") != "json_schema":
        raise invalid("output_config.format.type", "Input should be 'json_schema'")
    schema = _dict(fmt.get("schema"), "output_config.format.schema")
    return ResponseFormat(type="json_schema", schema=schema, name="response")


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [_str(s, f"stop_sequences.{i}") for i, s in enumerate(_list(value, "stop_sequences"))]


def _user(value: Any) -> str | None:
    if value is None:
        return None
    uid = _dict(value, "metadata").get("user_id")
    return None if uid is None else _str(uid, "metadata.user_id")


def parse_messages_request(body: Any, headers: dict[str, str], *, count_only: bool = False) -> ChatRequest:
    """``count_only``: a count_tokens body, which has no ``max_tokens`` (and no sampling)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    for key in ("model", "messages") if count_only else ("model", "max_tokens", "messages"):
        if key not in body:
            raise _required(key)
    model = _str(body["model"], "model")
    if not model:
        raise invalid("model", "String should have at least 1 character")
    max_tokens = None if count_only else _int(body["max_tokens"], "max_tokens", 0)
    msgs = _list(body["messages"], "messages")
    if not msgs:
        raise invalid("messages", "at least one message is required")
    messages: list[Message] = []
    system = _system(body.get("system"))
    if system is not None:
        messages.append(system)
    for i, m in enumerate(msgs):
        _message(m, i, i == len(msgs) - 1, messages)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "Input should be a valid boolean")
    choice, parallel = _tool_choice(body.get("tool_choice"))
    extra = {k: v for k, v in body.items() if k not in KNOWN and k not in DROPPED}
    if body.get("top_k") is not None:
        extra["top_k"] = _int(body["top_k"], "top_k", 0)
    forwarded = {k: headers[k] for k in ("anthropic-version", "anthropic-beta") if headers.get(k)}
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        include_usage=True,  # Anthropic streams always carry usage
        tools=_tools(body.get("tools")),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=_output_format(body.get("output_config")),
        temperature=_number(body, "temperature", 0, 1),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        stop=_stop(body.get("stop_sequences")),
        user=_user(body.get("metadata")),
        extra=extra,
        dialect="anthropic",
        raw=body,
        headers=forwarded,
    )


def untranslatable(req: ChatRequest) -> InvalidRequest | None:
    """Why ``req`` cannot go to a provider other than Anthropic, if it cannot."""
    for i, t in enumerate((req.raw or {}).get("tools") or []):
        if isinstance(t, dict) and server_tool(t):
            return invalid(
                f"tools.{i}",
                f"the server tool '{t.get('type')}' is served only by Anthropic "
                "models; this model is served by another provider",
            )
    return None
