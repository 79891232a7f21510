"""Canonical ChatRequest -> Anthropic Messages API body (pure; the adapter in anthropic.py sends it).

What the translation does, and why:

* ``system`` and ``developer`` messages, wherever they stand, become the top-level ``system``
  (Anthropic has no system role in ``messages``); only text is allowed there.
* Consecutive messages of one role are merged into one turn, and tool results (``tool`` role)
  become ``tool_result`` blocks of a user turn, so that a run of tool messages followed by a user
  message is one user turn whose tool results come first, as Anthropic requires.
* Assistant ``tool_calls`` become ``tool_use`` blocks whose ``input`` is the parsed arguments.
* ``max_tokens`` is always sent: the request's, else the model's configured
  ``max_output_tokens``, else ``DEFAULT_MAX_TOKENS``.
* ``response_format: json_schema`` uses Anthropic's structured outputs
  (``output_config.format``); objects in the schema that do not say ``additionalProperties`` get
  ``false``, which the API requires and which every answer valid for the client's schema without
  extra keys still satisfies. Models older than Claude 4.5 reject structured outputs with a 400,
  passed on as is.
* ``response_format: json_object`` has no Anthropic equivalent (structured outputs need a schema
  that closes every object), so the request forces a tool, ``JSON_TOOL``, whose free-form object
  input is the answer; the adapter turns that input back into text content. It cannot be combined
  with the client's own tools (400).
* ``stop`` -> ``stop_sequences``, ``user`` -> ``metadata.user_id``,
  ``parallel_tool_calls: false`` -> ``tool_choice.disable_parallel_tool_use``.
* ``temperature`` above 1, ``n`` > 1, ``logprobs``/``top_logprobs``, ``logit_bias`` and non-zero
  presence/frequency penalties have no Anthropic meaning: a 400 naming the parameter. ``seed`` is
  dropped deliberately: Anthropic has no seed, and a seed is only a best-effort hint anywhere.
* Other parameters the client sent (``req.extra``, e.g. ``top_k``, ``thinking``, a top-level
  ``cache_control`` for automatic prompt caching) are forwarded as given, so that Anthropic
  answers an unknown one with a 400 naming it; only ``EXTRA_DROPPED`` (OpenAI bookkeeping
  without effect on the answer) is left out.
"""

from __future__ import annotations

from typing import Any

import orjson

from stellargate.core.request import ChatRequest, ImagePart, Message, OtherPart, TextPart
from stellargate.errors import InvalidRequest
from stellargate.providers.base import Target

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"  # the forced tool that carries a json_object answer
EXTRA_DROPPED = frozenset({"store", "prompt_cache_key"})
JSON_TOOL_DESCRIPTION = "Respond with the answer as a JSON object. The input is the whole answer."


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' is not supported by Anthropic models: {why}", param=param, code="unsupported_parameter"
    )


def _check_params(req: ChatRequest) -> None:
    if req.n is not None and req.n > 1:
        raise _unsupported("n", "they return one choice per request.")
    if req.logprobs:
        raise _unsupported("logprobs", "they do not return log probabilities.")
    if req.top_logprobs:
        raise _unsupported("top_logprobs", "they do not return log probabilities.")
    if req.logit_bias:
        raise _unsupported("logit_bias", "they do not accept token biases.")
    for p in ("presence_penalty", "frequency_penalty"):
        if getattr(req, p):
            raise _unsupported(p, "they have no repetition penalties.")
    if req.temperature is not None and req.temperature > 1:
        raise InvalidRequest(
            f"Invalid 'temperature': {req.temperature:g}; Anthropic models accept 0 to 1.",
            param="temperature",
            code="invalid_value",
        )


def _image_block(p: ImagePart, param: str) -> dict[str, Any]:
    if p.data is not None:
        source: dict[str, Any] = {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}
    elif p.url:
        source = {"type": "url", "url": p.url}
    else:
        raise InvalidRequest(f"Invalid '{param}': an image needs a URL or data.", param=param)
    return {"type": "image", "source": source}


def _content_blocks(m: Message, param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, p in enumerate(m.content):
        if isinstance(p, TextPart):
            if p.text:  # Anthropic rejects empty text blocks; an empty part says nothing anyway
                blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            blocks.append(_image_block(p, f"{param}[{i}]"))
        elif isinstance(p, OtherPart):
            kind = p.raw.get("type")
            raise InvalidRequest(
                f"Content parts of type '{kind}' are not supported by Anthropic models.",
                param=f"{param}[{i}].type",
                code="unsupported_content",
            )
    return blocks


def _tool_use(m: Message, index: int) -> list[dict[str, Any]]:
    out = []
    for j, call in enumerate(m.tool_calls):
        param = f"messages[{index}].tool_calls[{j}].function.arguments"
        try:
            args = orjson.loads(call.arguments) if call.arguments.strip() else {}
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                f"Invalid '{param}': not valid JSON; Anthropic needs the arguments as a JSON object.",
                param=param,
            ) from None
        if not isinstance(args, dict):
            raise InvalidRequest(f"Invalid '{param}': expected a JSON object.", param=param)
        out.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return out


def _tool_result(m: Message, index: int) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or ""}
    content = _content_blocks(m, f"messages[{index}].content")
    if content and all(b["type"] == "text" for b in content):
        block["content"] = "".join(b["text"] for b in content)
    elif content:
        block["content"] = content
    return block


def _system_and_turns(req: ChatRequest) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if m.role in ("system", "developer"):
            if any(not isinstance(p, TextPart) for p in m.content):
                raise InvalidRequest(
                    "Anthropic system prompts can only contain text.",
                    param=f"messages[{i}].content",
                    code="unsupported_content",
                )
            if m.text():
                system.append(m.text())
            continue
        if m.role == "tool":
            role, blocks = "user", [_tool_result(m, i)]
        elif m.role == "assistant":
            role, blocks = "assistant", _content_blocks(m, f"messages[{i}].content") + _tool_use(m, i)
        else:
            role, blocks = "user", _content_blocks(m, f"messages[{i}].content")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _close_objects(schema: Any) -> Any:
    """A copy of ``schema`` in which every object schema says ``additionalProperties`` (false
    unless it already said something); structured outputs refuse open objects."""
    if isinstance(schema, list):
        return [_close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _close_objects(v) for k, v in schema.items()}
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _tools(req: ChatRequest) -> list[dict[str, Any]]:
    tools = []
    for t in req.tools or []:
        tool: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["input_schema"] = t.parameters or {"type": "object", "properties": {}}
        if t.strict:
            tool["strict"] = True
        tools.append(tool)
    return tools


def _tool_choice(req: ChatRequest) -> dict[str, Any] | None:
    tc = req.tool_choice
    choice: dict[str, Any] | None = None
    if tc is not None:
        if tc.mode == "function":
            choice = {"type": "tool", "name": tc.name}
        else:
            choice = {"type": {"auto": "auto", "none": "none", "required": "any"}[tc.mode]}
    if req.parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def _apply_response_format(req: ChatRequest, body: dict[str, Any]) -> None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return
    if rf.type == "json_schema":
        fmt = {"type": "json_schema", "schema": _close_objects(rf.schema or {"type": "object"})}
        body["output_config"] = {**(body.get("output_config") or {}), "format": fmt}
        return
    if req.tools:
        raise InvalidRequest(
            "'response_format' json_object cannot be combined with 'tools' on Anthropic models; "
            "use json_schema instead.",
            param="response_format",
            code="unsupported_parameter",
        )
    body["tools"] = [
        {"name": JSON_TOOL, "description": JSON_TOOL_DESCRIPTION, "input_schema": {"type": "object"}}
    ]
    body["tool_choice"] = {"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": True}


def uses_json_tool(req: ChatRequest) -> bool:
    rf = req.response_format
    return rf is not None and rf.type == "json_object"


def request_body(req: ChatRequest, target: Target) -> dict[str, Any]:
    """The Messages API body for ``req`` sent to ``target``."""
    _check_params(req)
    system, turns = _system_and_turns(req)
    if not turns:
        raise InvalidRequest(
            "Anthropic models need at least one user or assistant message with content.", param="messages"
        )
    body: dict[str, Any] = {k: v for k, v in req.extra.items() if k not in EXTRA_DROPPED}
    max_tokens = req.max_tokens
    if max_tokens is None and target.model is not None:
        max_tokens = target.model.max_output_tokens
    body.update(model=target.upstream_model, max_tokens=max_tokens or DEFAULT_MAX_TOKENS, messages=turns)
    if system:
        body["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": s} for s in system]
    if req.tools:
        body["tools"] = _tools(req)
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    _apply_response_format(req, body)
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.user is not None:
        body["metadata"] = {**(body.get("metadata") or {}), "user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body
