"""Canonical ChatRequest -> Gemini ``GenerateContentRequest`` body (camelCase, as on the wire)."""

from __future__ import annotations

from typing import Any

import orjson

from stellargate.core.request import ChatRequest, ImagePart, Message, OtherPart, TextPart
from stellargate.errors import InvalidRequest
from stellargate.providers.gemini_schema import is_empty_object, to_gemini_schema

# A Gemini thought signature rides inside the tool call id the client sees, because an OpenAI
# client has nowhere else to keep it, and Gemini 3 refuses a function call turn sent back
# without it. Tool call ids are opaque to clients, so this is invisible to them.
SIGNATURE_SEP = "~ts~"

# OpenAI's reasoning_effort, as Google's own OpenAI-compatible endpoint maps it to a budget.
_THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_AUDIO = {"wav": "audio/wav", "mp3": "audio/mp3"}


def join_call_id(call_id: str, signature: str | None) -> str:
    return f"{call_id}{SIGNATURE_SEP}{signature}" if signature else call_id


def split_call_id(call_id: str) -> tuple[str, str | None]:
    base, sep, signature = call_id.partition(SIGNATURE_SEP)
    return (base, signature) if sep else (call_id, None)


def _data_url(url: str) -> tuple[str, str] | None:
    head, sep, data = url.partition(",")
    if sep and head.startswith("data:") and head.endswith(";base64"):
        return head[5:-7] or "application/octet-stream", data
    return None


def _other_part(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Content parts the canonical model does not interpret, where Gemini has a spelling for them."""
    if any(k in raw for k in ("inlineData", "fileData", "text")):
        return raw  # already a Gemini part (a client that knows whom it talks to)
    t = raw.get("type")
    if t == "input_audio" and isinstance(raw.get("input_audio"), dict):
        audio = raw["input_audio"]
        fmt = str(audio.get("format") or "wav")
        return {"inlineData": {"mimeType": _AUDIO.get(fmt, f"audio/{fmt}"), "data": audio.get("data", "")}}
    if t == "file" and isinstance(raw.get("file"), dict):
        inline = _data_url(str(raw["file"].get("file_data") or ""))
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    raise InvalidRequest(
        f"The content part type '{t}' at {where} is not supported by this provider.",
        param=where,
        code="unsupported_content",
    )


def _parts(m: Message, where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(m.content):
        if isinstance(p, TextPart):
            if p.text:  # Gemini refuses an empty text part
                parts.append({"text": p.text})
        elif isinstance(p, ImagePart):
            if p.data is not None:
                parts.append({"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}})
            elif p.url is not None:
                inline = _data_url(p.url)
                if inline is not None:
                    parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
                else:
                    # Not http(s) (those were fetched before translation): gs:// or a Files API URI.
                    parts.append({"fileData": {"mimeType": p.media_type or "image/jpeg", "fileUri": p.url}})
        elif isinstance(p, OtherPart):
            parts.append(_other_part(p.raw, f"{where}.content[{j}]"))
    return parts


def _args(text: str) -> dict[str, Any]:
    try:
        v = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        v = None
    # Gemini's args is an object; anything else the model once produced is kept, wrapped.
    return v if isinstance(v, dict) else {"arguments": text}


def _response(text: str) -> dict[str, Any]:
    try:
        v = orjson.loads(text)
    except orjson.JSONDecodeError:
        v = None
    # functionResponse.response is a JSON object; plain text goes under "result".
    return v if isinstance(v, dict) else {"result": text}


def contents(req: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(contents, systemInstruction): consecutive turns of one role merged, as Gemini expects."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, to name each functionResponse

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})

    for i, m in enumerate(req.messages):
        where = f"messages[{i}]"
        if m.role in ("system", "developer"):
            system.extend({"text": p.text} for p in m.content if isinstance(p, TextPart) and p.text)
        elif m.role == "user":
            add("user", _parts(m, where))
        elif m.role == "assistant":
            parts = _parts(m, where)
            for t in m.tool_calls:
                call_id, signature = split_call_id(t.id)
                names[t.id] = names[call_id] = t.name
                fc: dict[str, Any] = {"name": t.name, "args": _args(t.arguments)}
                if call_id:
                    fc["id"] = call_id
                part: dict[str, Any] = {"functionCall": fc}
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            add("model", parts)
        elif m.role == "tool":
            tcid = m.tool_call_id or ""
            name = names.get(tcid) or m.name
            if not name:
                raise InvalidRequest(
                    f"The tool message {where} answers tool call '{tcid}', which no earlier "
                    "assistant message made; Gemini needs the function's name.",
                    param=f"{where}.tool_call_id",
                    code="invalid_tool_call_id",
                )
            fr: dict[str, Any] = {"name": name, "response": _response(m.text())}
            call_id = split_call_id(tcid)[0]
            if call_id:
                fr["id"] = call_id
            add("user", [{"functionResponse": fr}])
    return out, ({"parts": system} if system else None)


def _tools(req: ChatRequest) -> list[dict[str, Any]] | None:
    if not req.tools:
        return None
    decls = []
    for t in req.tools:
        d: dict[str, Any] = {"name": t.name}
        if t.description:
            d["description"] = t.description
        if t.parameters:
            params = to_gemini_schema(t.parameters)
            if params and not is_empty_object(params):
                d["parameters"] = params
        decls.append(d)
    return [{"functionDeclarations": decls}]


def _tool_config(req: ChatRequest) -> dict[str, Any] | None:
    tc = req.tool_choice
    if tc is None or not req.tools:
        return None
    fcc: dict[str, Any]
    if tc.mode == "function":
        fcc = {"mode": "ANY", "allowedFunctionNames": [tc.name]}
    else:
        fcc = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[tc.mode]}
    return {"functionCallingConfig": fcc}


def generation_config(req: ChatRequest) -> dict[str, Any]:
    g: dict[str, Any] = {}
    pairs = (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("maxOutputTokens", req.max_tokens),
        ("stopSequences", req.stop),
        ("seed", req.seed),
        ("candidateCount", req.n),
        ("presencePenalty", req.presence_penalty),
        ("frequencyPenalty", req.frequency_penalty),
    )
    g.update((k, v) for k, v in pairs if v is not None)
    if req.logprobs:
        g["responseLogprobs"] = True
        if req.top_logprobs:
            g["logprobs"] = req.top_logprobs
    rf = req.response_format
    if rf is not None and rf.type != "text":
        g["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema:
            g["responseSchema"] = to_gemini_schema(rf.schema)
    top_k = req.extra.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        g["topK"] = top_k
    effort = req.extra.get("reasoning_effort")
    if isinstance(effort, str) and effort in _THINKING_BUDGET:
        g["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET[effort]}
    return g


def request_body(req: ChatRequest) -> dict[str, Any]:
    """The body for generateContent / streamGenerateContent.

    OpenAI-only parameters Gemini has no counterpart for (logit_bias, user, parallel_tool_calls,
    and unknown extras other than top_k and reasoning_effort) are not sent.
    """
    cs, system = contents(req)
    body: dict[str, Any] = {"contents": cs}
    if system is not None:
        body["systemInstruction"] = system
    tools = _tools(req)
    if tools is not None:
        body["tools"] = tools
    tool_config = _tool_config(req)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    g = generation_config(req)
    if g:
        body["generationConfig"] = g
    return body
