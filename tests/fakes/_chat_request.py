"""Validation of POST /v1/chat/completions bodies, turning them into a ChatRequest (or OpenAI's 400)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes import _errors, _params
from tests.fakes._schema import strict_schema_problem

CHAT_PARAMS = frozenset(
    {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
        "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
        "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
        "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
ROLES = ["system", "assistant", "user", "function", "tool", "developer"]
USER_PART_TYPES = ["text", "image_url", "input_audio", "file"]
TOOL_MISMATCH = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."  # noqa: E501


@dataclass(frozen=True)
class FunctionTool:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    n: int
    stream: bool
    include_usage: bool
    include_obfuscation: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    tools: tuple[FunctionTool, ...]
    tool_choice: str  # "auto" | "none" | "required" | "function"
    forced_tool: str | None
    parallel_tool_calls: bool
    response_format: ResponseFormat


def parse_chat_request(body: dict[str, Any], models: Collection[str], *, strict_params: bool) -> ChatRequest:
    model = _params.require_model(body)
    if strict_params:
        _params.reject_unknown(body, CHAT_PARAMS)
    messages = _messages(body)
    _params.sampling_params(body)
    n = _params.optional_int(body, "n", minimum=1, maximum=128) or 1
    max_tokens = _max_tokens(body)
    stop = _params.stop_sequences(body)
    stream = bool(_params.optional_bool(body, "stream"))
    options = _params.stream_options(body, stream)
    tools = _tools(body)
    tool_choice, forced = _tool_choice(body, tools)
    parallel = _params.optional_bool(body, "parallel_tool_calls")
    if parallel is not None and not body.get("tools"):
        raise _errors.invalid_request(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' "
            "are specified.",
            param="parallel_tool_calls",
        )
    response_format = _response_format(body, messages)
    check_tool_sequence(messages)
    _params.check_model(model, models, "chat")
    return ChatRequest(
        model=model,
        messages=messages,
        n=n,
        stream=stream,
        include_usage=options.get("include_usage") is True,
        include_obfuscation=options.get("include_obfuscation") is not False,
        max_tokens=max_tokens,
        stop=stop,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
        parallel_tool_calls=parallel is not False,
        response_format=response_format,
    )


def _max_tokens(body: dict[str, Any]) -> int | None:
    limits = [
        _params.optional_int(body, "max_tokens", minimum=1),
        _params.optional_int(body, "max_completion_tokens", minimum=1),
    ]
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise _errors.missing_param("messages")
    if not isinstance(messages, list):
        raise _errors.invalid_type("messages", "an array", messages)
    if not messages:
        raise _errors.empty_array("messages")
    for index, message in enumerate(messages):
        _message(index, message)
    return messages


def _message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _errors.invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _errors.missing_param(f"{where}.role")
    if role not in ROLES:
        raise _errors.invalid_value(f"{where}.role", role, ROLES)
    if role == "assistant":
        _assistant_message(index, message)
        return
    if "content" not in message or message["content"] is None:
        raise _errors.missing_param(f"{where}.content")
    _content(where, message["content"], USER_PART_TYPES if role == "user" else ["text"])
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _errors.missing_param(f"{where}.tool_call_id")
    if role == "function" and not isinstance(message.get("name"), str):
        raise _errors.missing_param(f"{where}.name")


def _assistant_message(index: int, message: dict[str, Any]) -> None:
    where = f"messages[{index}]"
    tool_calls = message.get("tool_calls")
    if message.get("content") is None and not tool_calls and not message.get("function_call"):
        raise _errors.invalid_request(
            "Invalid value for 'content': expected a string, got null.", param=f"messages.[{index}].content"
        )
    if message.get("content") is not None:
        _content(where, message["content"], ["text", "refusal"])
    if tool_calls is None:
        return
    if not isinstance(tool_calls, list):
        raise _errors.invalid_type(f"{where}.tool_calls", "an array", tool_calls)
    for j, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise _errors.invalid_type(call_where, "an object", call)
        for key in ("id", "function"):
            if key not in call:
                raise _errors.missing_param(f"{call_where}.{key}")
        if not isinstance(call["function"], dict) or not isinstance(call["function"].get("name"), str):
            raise _errors.missing_param(f"{call_where}.function.name")


def _content(where: str, content: Any, part_types: list[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _errors.invalid_type(f"{where}.content", "a string or an array of objects", content)
    for k, part in enumerate(content):
        part_where = f"{where}.content[{k}]"
        if not isinstance(part, dict):
            raise _errors.invalid_type(part_where, "an object", part)
        part_type = part.get("type")
        if part_type not in part_types:
            raise _errors.invalid_value(f"{part_where}.type", part_type, part_types)
        if part_type == "text" and not isinstance(part.get("text"), str):
            raise _errors.missing_param(f"{part_where}.text")
        if part_type == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _errors.missing_param(f"{part_where}.image_url.url")


def check_tool_sequence(messages: list[dict[str, Any]]) -> None:
    """Every tool message answers the assistant tool_calls just before it, and every call is answered."""
    pending: set[str] = set()
    open_index: int | None = None
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            if open_index is None:
                raise _errors.invalid_request(TOOL_MISMATCH, param=f"messages.[{index}].role")
            call_id = message["tool_call_id"]
            if call_id not in pending:
                raise _errors.invalid_request(
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
                    "previous message.",
                    param=f"messages.[{index}].tool_call_id",
                )
            pending.discard(call_id)
            continue
        _require_answered(pending, open_index)
        pending, open_index = set(), None
        if role == "assistant" and message.get("tool_calls"):
            pending = {call["id"] for call in message["tool_calls"]}
            open_index = index
    _require_answered(pending, open_index)


def _require_answered(pending: set[str], open_index: int | None) -> None:
    if pending and open_index is not None:
        raise _errors.invalid_request(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            "'tool_call_id'. The following tool_call_ids did not have response messages: "
            + ", ".join(sorted(pending)),
            param=f"messages.[{open_index}].role",
        )


def _tools(body: dict[str, Any]) -> tuple[FunctionTool, ...]:
    tools = body.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _errors.invalid_type("tools", "an array", tools)
    parsed = (_tool(i, tool) for i, tool in enumerate(tools))
    return tuple(tool for tool in parsed if tool is not None)


def _tool(index: int, tool: Any) -> FunctionTool | None:
    """A function tool; custom tools are accepted but the fake never calls them (None)."""
    where = f"tools[{index}]"
    if not isinstance(tool, dict):
        raise _errors.invalid_type(where, "an object", tool)
    if tool.get("type") == "custom":
        if not isinstance(tool.get("custom"), dict) or not tool["custom"].get("name"):
            raise _errors.missing_param(f"{where}.custom.name")
        return None
    if tool.get("type") != "function":
        raise _errors.invalid_value(f"{where}.type", tool.get("type"), ["function", "custom"])
    function = tool.get("function")
    if not isinstance(function, dict):
        raise _errors.missing_param(f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _errors.missing_param(f"{where}.function.name")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if function.get("strict") is True:
        problem = strict_schema_problem(parameters)
        if problem:
            raise _errors.invalid_request(
                f"Invalid schema for function '{name}': {problem}",
                param=f"{where}.function.parameters",
                code="invalid_function_parameters",
            )
    return FunctionTool(name=name, parameters=parameters)


def _tool_choice(body: dict[str, Any], tools: tuple[FunctionTool, ...]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if choice is None:
        return ("auto" if tools else "none"), None
    if not body.get("tools"):
        raise _errors.invalid_request(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _errors.invalid_value("tool_choice", choice, ["none", "auto", "required"])
        return choice, None
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise _errors.missing_param("tool_choice.function.name")
    if name not in {tool.name for tool in tools}:
        raise _errors.invalid_request(
            f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.", param="tool_choice"
        )
    return "function", name


def _response_format(body: dict[str, Any], messages: list[dict[str, Any]]) -> ResponseFormat:
    value = _params.optional_object(body, "response_format")
    if value is None:
        return ResponseFormat("text", {})
    kind = value.get("type")
    if kind == "text":
        return ResponseFormat("text", {})
    if kind == "json_object":
        if "json" not in _all_text(messages).lower():
            raise _errors.invalid_request(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.",
                param="messages",
            )
        return ResponseFormat("json_object", {})
    if kind == "json_schema":
        return ResponseFormat("json_schema", _json_schema(value.get("json_schema")))
    raise _errors.invalid_value("response_format.type", kind, ["json_object", "json_schema", "text"])


def _json_schema(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _errors.missing_param("response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _errors.missing_param("response_format.json_schema.name")
    schema = spec.get("schema") or {"type": "object", "properties": {}}
    if spec.get("strict") is True:
        if schema.get("type") != "object":
            raise _schema_error(
                name,
                f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{schema.get('type')}\"'.",
            )
        problem = strict_schema_problem(schema)
        if problem:
            raise _schema_error(name, problem)
    return schema


def _schema_error(name: str, problem: str) -> _errors.OpenAIHTTPError:
    return _errors.invalid_request(
        f"Invalid schema for response_format '{name}': {problem}",
        param="response_format",
        code="invalid_json_schema",
    )


def _all_text(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return " ".join(parts)
