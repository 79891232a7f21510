"""Gemini ``GenerateContentRequest`` -> canonical ChatRequest, validated the way Gemini validates.

Errors are Gemini's (400 INVALID_ARGUMENT) with Google's wording: unknown fields are
``Invalid JSON payload received. Unknown name "x" at 'path': Cannot find field.``, semantic
errors ``* GenerateContentRequest.<path>: <why>``.

Mapping: ``systemInstruction`` -> a leading system message; ``model`` turns -> assistant messages
(``functionCall`` parts -> tool calls, arguments = the args as JSON text); ``functionResponse``
parts -> tool messages placed where they stand in their user turn; ``inlineData`` / ``fileData``
images -> ImagePart; ``tools.functionDeclarations`` -> tools (``parameters`` converted from
Gemini's Schema, ``parametersJsonSchema`` taken as is); ``toolConfig.functionCallingConfig``
AUTO/NONE/ANY(+allowedFunctionNames) -> auto/none/required/function; ``generationConfig`` ->
sampling parameters, ``responseMimeType`` + ``responseSchema``/``responseJsonSchema`` ->
response_format.

Gemini function calls may come without ids; each call then gets ``call_<n>`` (stable within the
request) and each functionResponse without id answers the oldest unanswered call of its name.

What only Gemini can serve (built-in tools such as googleSearch, cachedContent, non-image media)
is refused by name when the model is served by another provider (``untranslatable``); the
identity path forwards the body as it came. Thought parts of earlier turns, safetySettings and
thinkingConfig have no meaning for other providers and are dropped on the translated path.
"""

from __future__ import annotations

from typing import Any, Literal

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
from stellargate.dialects.gemini_wire import (
    field_error,
    fields,
    integer,
    invalid,
    json_schema,
    number,
    string,
    value_error,
)
from stellargate.errors import InvalidRequest

TOP = frozenset(
    {
        "contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
        "cachedContent", "model", "labels", "serviceTier", "store",
    }
)  # fmt: skip
CONTENT = frozenset({"role", "parts"})
PART = frozenset(
    {
        "text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
        "thoughtSignature", "executableCode", "codeExecutionResult", "videoMetadata",
        "mediaResolution", "partMetadata",
    }
)  # fmt: skip
_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
         "codeExecutionResult")  # fmt: skip
TOOL = frozenset(
    {
        "functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext",
        "computerUse", "fileSearch", "googleMaps", "retrieval", "enterpriseWebSearch", "mcpServers",
    }
)  # fmt: skip
DECLARATION = frozenset(
    {
        "name",
        "description",
        "parameters",
        "parametersJsonSchema",
        "response",
        "responseJsonSchema",
        "behavior",
    }
)
GENERATION = frozenset(
    {
        "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
        "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
        "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities", "mediaResolution",
        "speechConfig", "enableEnhancedCivicAnswers", "imageConfig",
    }
)  # fmt: skip
_MODES: dict[str, Literal["auto", "none", "required"]] = {
    "AUTO": "auto",
    "VALIDATED": "auto",
    "NONE": "none",
    "ANY": "required",
    "MODE_UNSPECIFIED": "auto",
}


def _text_of_response(response: Any) -> str:
    # A {"result": "..."} / {"output": "..."} answer is that text; anything else its JSON.
    if isinstance(response, dict) and len(response) == 1:
        (k, v), = response.items()  # fmt: skip
        if k in ("result", "output", "content") and isinstance(v, str):
            return v
    return orjson.dumps(response).decode()


class _Calls:
    """Ids of function calls, synthesised where Gemini gave none, and which are still unanswered."""

    def __init__(self) -> None:
        self._n = 0
        self.pending: list[tuple[str, str]] = []  # (id, name) of the latest model turn's calls

    def new_turn(self) -> None:
        self.pending = []

    def call(self, given: Any, name: str) -> str:
        call_id = given if isinstance(given, str) and given else f"call_{self._n}"
        self._n += 1
        self.pending.append((call_id, name))
        return call_id

    def answer(self, given: Any, name: str) -> str:
        if isinstance(given, str) and given:
            self.pending = [p for p in self.pending if p[0] != given]
            return given
        for k, (call_id, call_name) in enumerate(self.pending):
            if call_name == name:
                del self.pending[k]
                return call_id
        call_id = f"call_{self._n}"
        self._n += 1
        return call_id


def _part(value: Any, path: str) -> dict[str, Any]:
    p = fields(value, path, PART)
    data = [k for k in _DATA if k in p]
    if len(data) != 1:
        raise field_error(f"{path}.data", "required oneof field 'data' must have one initialized field")
    return p


def _media(p: dict[str, Any], path: str) -> Part:
    if "inlineData" in p:
        blob = fields(p["inlineData"], f"{path}.inline_data", {"mimeType", "data", "displayName"})
        mime, data = (
            string(blob, "mimeType", f"{path}.inline_data"),
            string(blob, "data", f"{path}.inline_data"),
        )
        if not mime or data is None:
            raise field_error(f"{path}.inline_data", "mime_type and data are required")
        return ImagePart(data=data, media_type=mime) if mime.startswith("image/") else OtherPart(p)
    ref = fields(p["fileData"], f"{path}.file_data", {"mimeType", "fileUri", "displayName"})
    uri = string(ref, "fileUri", f"{path}.file_data")
    if not uri:
        raise field_error(f"{path}.file_data.file_uri", "file_uri is required")
    mime = string(ref, "mimeType", f"{path}.file_data") or ""
    if mime.startswith("image/") and uri.startswith(("http://", "https://")):
        return ImagePart(url=uri, media_type=mime)
    return OtherPart(p)


def _turn(role: str, parts: list[dict[str, Any]], path: str, calls: _Calls) -> list[Message]:
    out: list[Message] = []
    if role == "model":
        calls.new_turn()
        msg = Message(role="assistant")
        for j, p in enumerate(parts):
            pp = f"{path}.parts[{j}]"
            if "text" in p:
                if not p.get("thought"):  # earlier thinking means nothing to another provider
                    msg.content.append(TextPart(str(p["text"])))
            elif "functionCall" in p:
                fc = fields(p["functionCall"], f"{pp}.function_call", {"id", "name", "args"})
                name = string(fc, "name", f"{pp}.function_call")
                if not name:
                    raise field_error(f"{pp}.function_call.name", "Name cannot be empty.")
                args = fc.get("args") or {}
                if not isinstance(args, dict):
                    raise value_error(f"{pp}.function_call.args", "TYPE_MESSAGE", args)
                msg.tool_calls.append(
                    ToolCall(calls.call(fc.get("id"), name), name, orjson.dumps(args).decode())
                )
            elif "inlineData" in p or "fileData" in p:
                msg.content.append(OtherPart(p))
        return [msg]
    user: Message | None = None
    for j, p in enumerate(parts):
        pp = f"{path}.parts[{j}]"
        if "functionResponse" in p:
            fr = fields(
                p["functionResponse"],
                f"{pp}.function_response",
                {"id", "name", "response", "parts", "willContinue", "scheduling"},
            )
            name = string(fr, "name", f"{pp}.function_response")
            if not name:
                raise field_error(f"{pp}.function_response.name", "Name cannot be empty.")
            response = fr.get("response") or {}
            if not isinstance(response, dict):
                raise value_error(f"{pp}.function_response.response", "TYPE_MESSAGE", response)
            call_id = calls.answer(fr.get("id"), name)
            out.append(
                Message("tool", [TextPart(_text_of_response(response))], name=name, tool_call_id=call_id)
            )
            user = None
            continue
        if user is None:
            user = Message(role="user")
            out.append(user)
        if "text" in p:
            user.content.append(TextPart(str(p["text"])))
        elif "inlineData" in p or "fileData" in p:
            user.content.append(_media(p, pp))
        else:
            user.content.append(OtherPart(p))
    return out


def _contents(value: Any, calls: _Calls) -> list[Message]:
    if not value:
        raise field_error("contents", "contents is not specified")
    if not isinstance(value, list):
        raise value_error("contents", "TYPE_MESSAGE", value)
    out: list[Message] = []
    for i, c in enumerate(value):
        path = f"contents[{i}]"
        content = fields(c, path, CONTENT)
        role = content.get("role") or "user"
        if role not in ("user", "model"):
            raise invalid("Please use a valid role: user, model.", param=f"{path}.role")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise field_error(f"{path}.parts", "contents.parts must not be empty.")
        out.extend(_turn(role, [_part(p, f"{path}.parts[{j}]") for j, p in enumerate(parts)], path, calls))
    return out


def _system(value: Any) -> Message | None:
    if value is None:
        return None
    content = fields(value, "system_instruction", CONTENT)
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise value_error("system_instruction.parts", "TYPE_MESSAGE", parts)
    texts: list[Part] = []
    for j, p in enumerate(parts):
        part = _part(p, f"system_instruction.parts[{j}]")
        if "text" in part:
            texts.append(TextPart(str(part["text"])))
    return Message(role="system", content=texts) if texts else None


def _tools(value: Any) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise value_error("tools", "TYPE_MESSAGE", value)
    tools: list[Tool] = []
    for i, t in enumerate(value):
        tool = fields(t, f"tools[{i}]", TOOL)
        decls = tool.get("functionDeclarations") or []
        if not isinstance(decls, list):
            raise value_error(f"tools[{i}].function_declarations", "TYPE_MESSAGE", decls)
        for j, d in enumerate(decls):
            path = f"tools[{i}].function_declarations[{j}]"
            decl = fields(d, path, DECLARATION)
            name = string(decl, "name", path)
            if not name:
                raise field_error(f"{path}.name", "Name cannot be empty.")
            params: dict[str, Any] | None = None
            if isinstance(decl.get("parametersJsonSchema"), dict):
                params = decl["parametersJsonSchema"]
            elif decl.get("parameters") is not None:
                params = json_schema(decl["parameters"], f"{path}.parameters")
            tools.append(Tool(name=name, description=string(decl, "description", path), parameters=params))
    return tools


def _tool_choice(value: Any, tools: list[Tool] | None) -> tuple[ToolChoice | None, list[Tool] | None]:
    if value is None:
        return None, tools
    cfg = fields(value, "tool_config", {"functionCallingConfig", "retrievalConfig"})
    fcc = cfg.get("functionCallingConfig")
    if fcc is None:
        return None, tools
    f = fields(fcc, "tool_config.function_calling_config", {"mode", "allowedFunctionNames"})
    mode = str(f.get("mode") or "AUTO").upper()
    if mode not in _MODES:
        raise value_error("tool_config.function_calling_config.mode", "TYPE_ENUM", f.get("mode"))
    allowed = f.get("allowedFunctionNames")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed)
    ):
        raise value_error(
            "tool_config.function_calling_config.allowed_function_names", "TYPE_STRING", allowed
        )
    if mode == "ANY" and allowed:
        if len(allowed) == 1:
            return ToolChoice(mode="function", name=allowed[0]), tools
        # Any one of several: the others may not be called, so they are not offered.
        return ToolChoice(mode="required"), [t for t in tools or [] if t.name in allowed]
    return ToolChoice(mode=_MODES[mode]), tools


def _response_format(g: dict[str, Any]) -> ResponseFormat | None:
    mime = string(g, "responseMimeType", "generation_config")
    if mime != "application/json":
        has_schema = g.get("responseSchema") is not None or g.get("responseJsonSchema") is not None
        if has_schema and mime != "text/x.enum":
            raise field_error(
                "generation_config.response_mime_type",
                "a response schema needs response_mime_type application/json.",
            )
        return None
    if isinstance(g.get("responseJsonSchema"), dict):
        return ResponseFormat(type="json_schema", schema=g["responseJsonSchema"], name="response")
    if g.get("responseSchema") is not None:
        schema = json_schema(g["responseSchema"], "generation_config.response_schema")
        return ResponseFormat(type="json_schema", schema=schema, name="response")
    return ResponseFormat(type="json_object")


def parse_generate_request(body: Any, model: str, stream: bool) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    b = fields(body, "", TOP)
    calls = _Calls()
    messages = _contents(b.get("contents"), calls)
    system = _system(b.get("systemInstruction"))
    if system is not None:
        messages.insert(0, system)
    tool_choice, tools = _tool_choice(b.get("toolConfig"), _tools(b.get("tools")))
    g = fields(b.get("generationConfig") or {}, "generation_config", GENERATION)
    stop = g.get("stopSequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise value_error("generation_config.stop_sequences", "TYPE_STRING", stop)
    logprobs = g.get("responseLogprobs")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=True,  # Gemini answers always carry usageMetadata
        tools=tools,
        tool_choice=tool_choice,
        response_format=_response_format(g),
        temperature=number(g, "temperature", "generation_config", 0, 2),
        top_p=number(g, "topP", "generation_config", 0, 1),
        max_tokens=integer(g, "maxOutputTokens", "generation_config", 1),
        stop=stop or None,
        n=integer(g, "candidateCount", "generation_config", 1, 8),
        seed=integer(g, "seed", "generation_config", -(2**31), 2**31 - 1),
        presence_penalty=number(g, "presencePenalty", "generation_config", -2, 2),
        frequency_penalty=number(g, "frequencyPenalty", "generation_config", -2, 2),
        logprobs=logprobs if isinstance(logprobs, bool) else None,
        top_logprobs=integer(g, "logprobs", "generation_config", 0, 20),
        dialect="gemini",
        raw=body,
    )


def untranslatable(req: ChatRequest) -> InvalidRequest | None:
    """Why ``req`` cannot go to a provider other than Gemini, if it cannot."""
    raw = req.raw or {}
    for i, t in enumerate(raw.get("tools") or []):
        for name in t if isinstance(t, dict) else ():
            if name not in ("functionDeclarations", "function_declarations"):
                return invalid(
                    f"The built-in tool '{name}' (tools[{i}]) is served only by Gemini models; "
                    "this model is served by another provider.",
                    param=f"tools[{i}]",
                )
    if raw.get("cachedContent") or raw.get("cached_content"):
        return invalid("cachedContent is served only by Gemini models.", param="cached_content")
    for i, m in enumerate(req.messages):
        for p in m.content:
            if isinstance(p, OtherPart):
                return invalid(
                    f"A part of message {i} (media other than images, or code execution) can be "
                    "served only by Gemini models; this model is served by another provider.",
                    param="contents",
                )
    return None
