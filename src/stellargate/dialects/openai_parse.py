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
from stellargate.dialects.validate import (
    boolean,
    integer,
    missing,
    number,
    optional_object,
    optional_string,
    required_model,
    stop,
    type_error,
)
from stellargate.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
KNOWN = frozenset(
    {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "n",
        "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user",
    }
)  # fmt: skip


def _parts(content: Any, param: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise type_error(param, "a string or an array of content parts")
    parts: list[Part] = []
    for i, p in enumerate(content):
        pp = f"{param}[{i}]"
        if not isinstance(p, dict):
            raise type_error(pp, "an object")
        t = p.get("type")
        if t == "text":
            text = p.get("text")
            if not isinstance(text, str):
                raise type_error(f"{pp}.text", "a string")
            parts.append(TextPart(text))
        elif t == "image_url":
            iu = p.get("image_url")
            if isinstance(iu, str):  # tolerated by several OpenAI-compatible servers
                iu = {"url": iu}
            if not isinstance(iu, dict) or not isinstance(iu.get("url"), str):
                raise type_error(f"{pp}.image_url.url", "a string")
            parts.append(_image(iu["url"], iu.get("detail")))
        elif isinstance(t, str):
            parts.append(OtherPart(p))
        else:
            raise missing(f"{pp}.type")
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
        raise type_error(param, "an array")
    calls = []
    for i, c in enumerate(value):
        pp = f"{param}[{i}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(c.get("id"), str)
            or not isinstance(fn.get("name"), str)
        ):
            raise type_error(pp, "an object with 'id' and 'function': {'name', 'arguments'}")
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            raise type_error(f"{pp}.function.arguments", "a string")
        calls.append(ToolCall(id=c["id"], name=fn["name"], arguments=args))
    return calls


def _messages(value: Any) -> list[Message]:
    if value is None:
        raise missing("messages")
    if not isinstance(value, list):
        raise type_error("messages", "an array")
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
            raise type_error(pm, "an object")
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
            raise type_error(f"{pm}.name", "a string")
        msg = Message(role=role, content=_parts(m.get("content"), f"{pm}.content"), name=name)
        if role == "assistant":
            msg.tool_calls = _tool_calls(m.get("tool_calls"), f"{pm}.tool_calls")
        elif role == "tool":
            tcid = m.get("tool_call_id", m.get("name") if m.get("role") == "function" else None)
            if not isinstance(tcid, str):
                raise missing(f"{pm}.tool_call_id")
            msg.tool_call_id = tcid
        elif m.get("content") is None:
            raise missing(f"{pm}.content")
        out.append(msg)
    return out


def _tools(value: Any) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise type_error("tools", "an array")
    tools = []
    for i, t in enumerate(value):
        pt = f"tools[{i}]"
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise type_error(f"{pt}.function.name", "a string")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise type_error(f"{pt}.function.parameters", "a JSON Schema object")
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
            raise missing("response_format.json_schema.name")
        schema = js.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise type_error("response_format.json_schema.schema", "an object")
        return ResponseFormat(type="json_schema", schema=schema, name=js["name"], strict=js.get("strict"))
    raise InvalidRequest(
        "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )


def parse_chat_request(body: Any) -> ChatRequest:
    model = required_model(body)
    stream = boolean(body, "stream") or False
    so = optional_object(body, "stream_options")
    include_usage = bool(so.get("include_usage")) if so is not None else False
    logit_bias = optional_object(body, "logit_bias")
    user = optional_string(body, "user")
    max_tokens = integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = integer(body, "max_tokens", 1)
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        stream=stream,
        include_usage=include_usage,
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=boolean(body, "parallel_tool_calls"),
        response_format=_response_format(body.get("response_format")),
        temperature=number(body, "temperature", 0, 2),
        top_p=number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        stop=stop(body.get("stop")),
        n=integer(body, "n", 1, 128),
        seed=integer(body, "seed", -(2**63)),
        presence_penalty=number(body, "presence_penalty", -2, 2),
        frequency_penalty=number(body, "frequency_penalty", -2, 2),
        logit_bias=logit_bias,
        logprobs=boolean(body, "logprobs"),
        top_logprobs=integer(body, "top_logprobs", 0, 20),
        user=user,
        extra={k: v for k, v in body.items() if k not in KNOWN},
        dialect="openai",
        raw=body,
    )
