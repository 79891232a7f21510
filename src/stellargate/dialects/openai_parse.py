"""OpenAI Chat Completions request -> canonical ChatRequest, with OpenAI-style validation.

Type and shape errors are schema errors (422); values out of range are invalid parameters (400).
Each error names the offending ``param`` the way OpenAI does (``messages[1].content``).
"""

from __future__ import annotations

from typing import Any

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
from stellargate.errors import InvalidRequest, SchemaError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
KNOWN = frozenset(
    {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "n",
        "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user",
    }
)  # fmt: skip


def _type_error(param: str, expected: str) -> SchemaError:
    return SchemaError(f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _type_error(key, "a number")
    if not lo <= v <= hi:
        raise InvalidRequest(
            f"Invalid '{key}': {v} is out of range; expected a value between {lo:g} and {hi:g}.",
            param=key,
            code="invalid_value",
        )
    return float(v)


def _integer(body: dict[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _type_error(key, "an integer")
    if v < lo or (hi is not None and v > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise InvalidRequest(f"Invalid '{key}': expected {bound}, got {v}.", param=key, code="invalid_value")
    return v


def _bool(body: dict[str, Any], key: str) -> bool | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _type_error(key, "a boolean")
    return v


def _parts(content: Any, param: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise _type_error(param, "a string or an array of content parts")
    parts: list[Part] = []
    for i, p in enumerate(content):
        pp = f"{param}[{i}]"
        if not isinstance(p, dict):
            raise _type_error(pp, "an object")
        t = p.get("type")
        if t == "text":
            text = p.get("text")
            if not isinstance(text, str):
                raise _type_error(f"{pp}.text", "a string")
            parts.append(TextPart(text))
        elif t == "image_url":
            iu = p.get("image_url")
            if isinstance(iu, str):  # tolerated by several OpenAI-compatible servers
                iu = {"url": iu}
            if not isinstance(iu, dict) or not isinstance(iu.get("url"), str):
                raise _type_error(f"{pp}.image_url.url", "a string")
            parts.append(_image(iu["url"], iu.get("detail")))
        elif isinstance(t, str):
            parts.append(OtherPart(p))
        else:
            raise SchemaError(
                f"Missing required parameter: '{pp}.type'.",
                param=f"{pp}.type",
                code="missing_required_parameter",
            )
    return parts


def _image(url: str, detail: Any) -> ImagePart:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[5:].split(";")[0] or None
        if ";base64" in head:
            return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def _tool_calls(value: Any, param: str) -> list[ToolCall]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error(param, "an array")
    calls = []
    for i, c in enumerate(value):
        pp = f"{param}[{i}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(c.get("id"), str)
            or not isinstance(fn.get("name"), str)
        ):
            raise _type_error(pp, "an object with 'id' and 'function': {'name', 'arguments'}")
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            raise _type_error(f"{pp}.function.arguments", "a string")
        calls.append(ToolCall(id=c["id"], name=fn["name"], arguments=args))
    return calls


def _messages(value: Any) -> list[Message]:
    if value is None:
        raise SchemaError(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(value, list):
        raise _type_error("messages", "an array")
    if not value:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    out = []
    for i, m in enumerate(value):
        pm = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _type_error(pm, "an object")
        role = m.get("role")
        if role == "function":  # the deprecated form of a tool result
            role = "tool"
        if role not in ROLES:
            raise InvalidRequest(
                f"Invalid value for '{pm}.role': {role!r}. Supported values are: "
                "'system', 'developer', 'user', 'assistant' and 'tool'.",
                param=f"{pm}.role",
                code="invalid_value",
            )
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            raise _type_error(f"{pm}.name", "a string")
        msg = Message(role=role, content=_parts(m.get("content"), f"{pm}.content"), name=name)
        if role == "assistant":
            msg.tool_calls = _tool_calls(m.get("tool_calls"), f"{pm}.tool_calls")
        elif role == "tool":
            tcid = m.get("tool_call_id", m.get("name") if m.get("role") == "function" else None)
            if not isinstance(tcid, str):
                raise SchemaError(
                    f"Missing required parameter: '{pm}.tool_call_id'.",
                    param=f"{pm}.tool_call_id",
                    code="missing_required_parameter",
                )
            msg.tool_call_id = tcid
        elif m.get("content") is None:
            raise SchemaError(
                f"Missing required parameter: '{pm}.content'.",
                param=f"{pm}.content",
                code="missing_required_parameter",
            )
        out.append(msg)
    return out


def _tools(value: Any) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error("tools", "an array")
    tools = []
    for i, t in enumerate(value):
        pt = f"tools[{i}]"
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _type_error(f"{pt}.function.name", "a string")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _type_error(f"{pt}.function.parameters", "a JSON Schema object")
        desc = fn.get("description")
        tools.append(
            Tool(
                name=fn["name"],
                description=desc if isinstance(desc, str) else None,
                parameters=params,
                strict=fn.get("strict"),
            )
        )
    return tools


def _tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(mode=value)
    if isinstance(value, dict):
        fn = value.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice(mode="function", name=fn["name"])
    raise InvalidRequest(
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
        code="invalid_value",
    )


def _response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    t = value.get("type") if isinstance(value, dict) else None
    if t in ("text", "json_object"):
        return ResponseFormat(type=t)
    if t == "json_schema":
        js = value.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise SchemaError(
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
                code="missing_required_parameter",
            )
        schema = js.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise _type_error("response_format.json_schema.schema", "an object")
        return ResponseFormat(type="json_schema", schema=schema, name=js["name"], strict=js.get("strict"))
    raise InvalidRequest(
        "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        if len(value) > 4:
            raise InvalidRequest("Invalid 'stop': at most 4 sequences.", param="stop", code="invalid_value")
        return value
    raise _type_error("stop", "a string or an array of strings")


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if model is None:
        raise SchemaError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise _type_error("model", "a non-empty string")
    stream = _bool(body, "stream") or False
    include_usage = False
    so = body.get("stream_options")
    if so is not None:
        if not isinstance(so, dict):
            raise _type_error("stream_options", "an object")
        include_usage = bool(so.get("include_usage"))
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and not isinstance(logit_bias, dict):
        raise _type_error("logit_bias", "an object")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _type_error("user", "a string")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        stream=stream,
        include_usage=include_usage,
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_bool(body, "parallel_tool_calls"),
        response_format=_response_format(body.get("response_format")),
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        stop=_stop(body.get("stop")),
        n=_integer(body, "n", 1, 128),
        seed=_integer(body, "seed", -(2**63)),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        logit_bias=logit_bias,
        logprobs=_bool(body, "logprobs"),
        top_logprobs=_integer(body, "top_logprobs", 0, 20),
        user=user,
        extra={k: v for k, v in body.items() if k not in KNOWN},
        dialect="openai",
        raw=body,
    )
