"""Validation of a Messages request the way Anthropic does it, with Anthropic's error wording.

Consecutive turns of one role are merged before the conversation rules are checked, as the API
does; a leading assistant turn is accepted (the first-party API allows it since late 2024).
Sampling parameters (temperature, top_p, top_k) exist only up to API version 2023-06-01; the
``2026-10-21`` version refuses them as unknown fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes._anthropic_errors import AnthropicHTTPError, extra_forbidden, field_required, invalid

VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
SAMPLING = frozenset({"temperature", "top_p", "top_k"})
TOP_LEVEL = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "metadata", "tools",
        "tool_choice", "thinking", "output_config", "output_format", "service_tier", "cache_control",
        "container", "context_management", "mcp_servers", "inference_geo", "speed", "diagnostics",
        "user_profile_id", "workspace_id",
    }
)  # fmt: skip
BLOCK_TYPES = (
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
    "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload",
    "mcp_tool_use", "mcp_tool_result",
)  # fmt: skip
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_CACHE_BREAKPOINTS = 4


@dataclass
class MessagesRequest:
    model: str
    max_tokens: int
    messages: list[dict[str, Any]]  # merged turns, content always a list of blocks
    system: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    stop_sequences: tuple[str, ...] = ()
    stream: bool = False
    output_schema: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None  # top-level: automatic caching of the last block


def _type_error(path: str, what: str) -> AnthropicHTTPError:
    return invalid(f"{path}: Input should be a valid {what}")


def _tag_error(path: str, got: Any, tags: tuple[str, ...]) -> AnthropicHTTPError:
    listed = ", ".join(f"'{t}'" for t in tags)
    return invalid(
        f"{path}: Input tag '{got}' found using 'type' does not match any of the expected tags: {listed}"
    )


def _number(body: dict[str, Any], key: str, lo: float, hi: float | None) -> None:
    v = body.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _type_error(key, "number")
    if v < lo:
        raise invalid(f"{key}: Input should be greater than or equal to {lo:g}")
    if hi is not None and v > hi:
        raise invalid(f"{key}: Input should be less than or equal to {hi:g}")


def _cache_control(value: Any, path: str, count: list[int]) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise invalid(f"{path}.type: Input should be 'ephemeral'")
    if value.get("ttl") not in (None, "5m", "1h"):
        raise invalid(f"{path}.ttl: Input should be '5m' or '1h'")
    count[0] += 1


def _image(block: dict[str, Any], path: str) -> None:
    src = block.get("source")
    if not isinstance(src, dict):
        raise field_required(f"{path}.source")
    if src.get("type") == "base64":
        if src.get("media_type") not in MEDIA_TYPES:
            allowed = ", ".join(f"'{m}'" for m in MEDIA_TYPES[:-1]) + f" or '{MEDIA_TYPES[-1]}'"
            raise invalid(f"{path}.source.base64.media_type: Input should be {allowed}")
        if not isinstance(src.get("data"), str) or not src["data"]:
            raise field_required(f"{path}.source.base64.data")
    elif src.get("type") == "url":
        if not isinstance(src.get("url"), str):
            raise field_required(f"{path}.source.url.url")
    elif src.get("type") != "file":
        raise _tag_error(f"{path}.source", src.get("type"), ("base64", "url", "file"))


def _block(b: Any, role: str, path: str, cache: list[int]) -> dict[str, Any]:
    if not isinstance(b, dict):
        raise _type_error(path, "dictionary or object")
    t = b.get("type")
    if t not in BLOCK_TYPES:
        raise _tag_error(f"{path}.type", t, BLOCK_TYPES)
    _cache_control(b.get("cache_control"), f"{path}.{t}.cache_control", cache)
    if t == "text":
        if not isinstance(b.get("text"), str):
            raise field_required(f"{path}.text.text")
        if not b["text"]:
            raise invalid("messages: text content blocks must be non-empty")
    elif t == "image":
        _image(b, f"{path}.image")
    elif t in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
        raise invalid(f"{path}: `{t}` blocks can only be in `assistant` messages")
    elif t == "tool_result" and role != "user":
        raise invalid(f"{path}: `tool_result` blocks can only be in `user` messages")
    if t == "tool_use":
        for key, kind in (("id", str), ("name", str), ("input", dict)):
            if not isinstance(b.get(key), kind):
                raise field_required(f"{path}.tool_use.{key}")
    if t == "tool_result":
        if not isinstance(b.get("tool_use_id"), str):
            raise field_required(f"{path}.tool_result.tool_use_id")
        content = b.get("content")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                _block(inner, "user", f"{path}.tool_result.content.{k}", cache)
        elif content is not None and not isinstance(content, str):
            raise _type_error(f"{path}.tool_result.content", "string")
    return b


def _messages(value: Any, cache: list[int]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _type_error("messages", "list")
    if not value:
        raise invalid("messages: at least one message is required")
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(value):
        path = f"messages.{i}"
        if not isinstance(m, dict):
            raise _type_error(path, "dictionary or object")
        extra = set(m) - {"role", "content"}
        if extra:
            raise extra_forbidden(f"{path}.{sorted(extra)[0]}")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"{path}.role: Input should be 'user' or 'assistant'")
        if "content" not in m:
            raise field_required(f"{path}.content")
        content = m["content"]
        final_assistant = i == len(value) - 1 and role == "assistant"
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = [_block(b, role, f"{path}.content.{j}", cache) for j, b in enumerate(content)]
        else:
            raise _type_error(f"{path}.content", "string")
        if not blocks and not final_assistant:
            raise invalid(
                f"{path}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
            turns[-1]["index"].append(i)
        else:
            turns.append({"role": role, "content": list(blocks), "index": [i]})
    _check_tool_pairs(turns)
    last = turns[-1]
    if last["role"] == "assistant" and last["content"]:
        tail = last["content"][-1]
        if tail.get("type") == "text" and tail["text"] != tail["text"].rstrip():
            raise invalid("messages: final assistant content cannot end with trailing whitespace")
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def _check_tool_pairs(turns: list[dict[str, Any]]) -> None:
    for n, turn in enumerate(turns):
        uses = [b["id"] for b in turn["content"] if b.get("type") == "tool_use"]
        nxt = turns[n + 1] if n + 1 < len(turns) else None
        if uses and nxt is not None:
            answered = {b["tool_use_id"] for b in nxt["content"] if b.get("type") == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if missing:
                raise invalid(
                    f"messages.{turn['index'][-1]}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        if turn["role"] != "user":
            continue
        prev = turns[n - 1] if n else None
        offered = {b["id"] for b in prev["content"] if b.get("type") == "tool_use"} if prev else set()
        for j, b in enumerate(turn["content"]):
            if b.get("type") == "tool_result" and b["tool_use_id"] not in offered:
                raise invalid(
                    f"messages.{turn['index'][0]}.content.{j}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {b['tool_use_id']}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )


def _system(value: Any, cache: list[int]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    if not isinstance(value, list):
        raise _type_error("system", "string")
    for j, b in enumerate(value):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise invalid(f"system.{j}.type: Input should be 'text'")
        _cache_control(b.get("cache_control"), f"system.{j}.cache_control", cache)
    return list(value)


def _tools(value: Any, cache: list[int]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error("tools", "list")
    names: set[str] = set()
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            raise _type_error(f"tools.{i}", "dictionary or object")
        if t.get("type") not in (None, "custom"):
            continue  # a server tool: its own schema, not modelled here
        name = t.get("name")
        if not isinstance(name, str):
            raise field_required(f"tools.{i}.custom.name")
        if not TOOL_NAME.match(name):
            raise invalid(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if "input_schema" not in t:
            raise field_required(f"tools.{i}.custom.input_schema")
        if not isinstance(t["input_schema"], dict) or t["input_schema"].get("type") != "object":
            raise invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
        _cache_control(t.get("cache_control"), f"tools.{i}.custom.cache_control", cache)
    return list(value)


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        got = value.get("type") if isinstance(value, dict) else value
        raise _tag_error("tool_choice", got, ("auto", "any", "tool", "none"))
    if not tools and value["type"] != "none":
        raise invalid("tool_choice may only be specified while providing tools.")
    if value["type"] == "tool":
        if not isinstance(value.get("name"), str):
            raise field_required("tool_choice.tool.name")
        if value["name"] not in {t.get("name") for t in tools}:
            raise invalid(f"tool_choice.tool.name: Tool '{value['name']}' not found in provided tools")
    return value


def _closed_objects_problem(schema: Any, path: str) -> str | None:
    if isinstance(schema, list):
        for s in schema:
            problem = _closed_objects_problem(s, path)
            if problem:
                return problem
        return None
    if not isinstance(schema, dict):
        return None
    if (schema.get("type") == "object" or "properties" in schema) and schema.get(
        "additionalProperties"
    ) is not False:
        return f"{path}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    for v in schema.values():
        problem = _closed_objects_problem(v, path)
        if problem:
            return problem
    return None


def _output_schema(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error("output_config", "dictionary or object")
    if set(value) - {"format", "effort"}:
        raise extra_forbidden(f"output_config.{sorted(set(value) - {'format', 'effort'})[0]}")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise field_required("output_config.format.schema")
    problem = _closed_objects_problem(schema, "output_config.format.schema")
    if problem:
        raise invalid(problem)
    return schema


def validate(body: Any, version: str) -> MessagesRequest:
    if not isinstance(body, dict):
        raise invalid("Input should be a valid dictionary or object")
    allowed = TOP_LEVEL | (SAMPLING if version != "2026-10-21" else frozenset())
    for key in body:
        if key not in allowed:
            raise extra_forbidden(key)
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            raise field_required(key)
    if not isinstance(body["model"], str) or not body["model"]:
        raise _type_error("model", "string")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _type_error("max_tokens", "integer")
    if max_tokens < 0:
        raise invalid("max_tokens: Input should be greater than or equal to 0")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _number(body, "top_k", 0, None)
    if not isinstance(body.get("stream", False), bool):
        raise _type_error("stream", "boolean")
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _type_error("stop_sequences", "list")
    if any(not s.strip() for s in stops):
        raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _type_error("metadata", "dictionary or object")
        for key in metadata:
            if key != "user_id":
                raise extra_forbidden(f"metadata.{key}")
    cache = [0]
    top_cache = body.get("cache_control")
    _cache_control(top_cache, "cache_control", cache)
    tools = _tools(body.get("tools"), cache)
    req = MessagesRequest(
        model=body["model"],
        max_tokens=max_tokens,
        system=_system(body.get("system"), cache),
        messages=_messages(body["messages"], cache),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        stop_sequences=tuple(stops),
        stream=bool(body.get("stream", False)),
        output_schema=_output_schema(body.get("output_config")),
        cache_control=top_cache,
    )
    if cache[0] > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {cache[0]}."
        )
    return req
