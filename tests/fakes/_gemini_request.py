"""Validation of a Gemini ``GenerateContentRequest`` the way generativelanguage.googleapis.com does it.

Field names are accepted in camelCase and snake_case (Google's JSON parser takes both); an unknown
field anywhere is ``Unknown name "x" at 'path': Cannot find field.``. Function schemas are checked
against Gemini's Schema subset, so a gateway that forwards ``additionalProperties`` or ``$schema``
fails here as it would against Google. Turn order is checked as Gemini checks it: a function
response must follow the function call turn and answer each call, and on Gemini 3 models every
function call of the current turn must come back with its thought signature.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import _gemini_errors as errs

TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
       "cachedContent", "model", "labels", "serviceTier", "store"}  # fmt: skip
PART = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
        "thoughtSignature", "executableCode", "codeExecutionResult", "videoMetadata", "mediaResolution",
        "partMetadata"}  # fmt: skip
DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
        "codeExecutionResult")  # fmt: skip
TOOL = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext",
        "computerUse", "fileSearch", "googleMaps"}  # fmt: skip
DECL = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema",
        "behavior"}  # fmt: skip
GEN = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
       "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
       "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities", "mediaResolution",
       "speechConfig", "enableEnhancedCivicAnswers", "imageConfig"}  # fmt: skip
SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
          "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
          "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}  # fmt: skip
TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
MIME_TYPES = ("text/plain", "application/json", "text/x.enum")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def fields(value: Any, path: str, known: Collection[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errs.bad_value(path, "TYPE_MESSAGE", value)
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = camel(key)
        if name not in known:
            raise errs.unknown_field(key, path)
        out[name] = v
    return out


@dataclass(frozen=True)
class Function:
    name: str
    schema: dict[str, Any]  # parameters as plain JSON Schema (lower-case types), for sampling


@dataclass
class GenerateRequest:
    model: str
    contents: list[dict[str, Any]]  # {"role", "parts": [camelCase parts]}
    system: str = ""
    functions: list[Function] = field(default_factory=list)
    mode: str = "AUTO"
    allowed: list[str] = field(default_factory=list)
    candidates: int = 1
    max_output_tokens: int | None = None
    stop: tuple[str, ...] = ()
    mime: str = "text/plain"
    schema: dict[str, Any] | None = None  # responseSchema / responseJsonSchema as JSON Schema


def json_schema(value: Any, path: str, *, top_parameters: bool = False) -> dict[str, Any]:
    """Validate a Gemini Schema and return it as plain JSON Schema."""
    s = fields(value, path, SCHEMA)
    out: dict[str, Any] = {}
    t = s.get("type")
    if t is not None:
        if not isinstance(t, str) or t.upper() not in TYPES:
            raise errs.bad_value(f"{path}.type", "TYPE_ENUM", t)
        out["type"] = t.lower()
        fmt = s.get("format")
        if fmt is not None and t.upper() in FORMATS and fmt not in FORMATS[t.upper()]:
            allowed = " and ".join(f"'{f}'" for f in sorted(FORMATS[t.upper()]))
            raise errs.field_error(f"{path}.format", f"only {allowed} are supported for {t.upper()} type")
    if isinstance(s.get("enum"), list):
        out["enum"] = s["enum"]
    for key in ("minimum", "maximum", "minItems", "maxItems", "minLength", "format", "description"):
        if key in s:
            out[key] = s[key]
    props = s.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise errs.bad_value(f"{path}.properties", "TYPE_MESSAGE", props)
        out["properties"] = {k: json_schema(v, f"{path}.properties[{k}]") for k, v in props.items()}
    if top_parameters and (t or "").upper() == "OBJECT" and not props:
        raise errs.field_error(f"{path}.properties", "should be non-empty for OBJECT type")
    if isinstance(s.get("required"), list):
        out["required"] = s["required"]
    if "items" in s:
        out["items"] = json_schema(s["items"], f"{path}.items")
    if isinstance(s.get("anyOf"), list):
        out["anyOf"] = [json_schema(x, f"{path}.any_of[{i}]") for i, x in enumerate(s["anyOf"])]
    return out


def _part(value: Any, path: str) -> dict[str, Any]:
    p = fields(value, path, PART)
    if sum(k in p for k in DATA) != 1:
        raise errs.field_error(f"{path}.data", "required oneof field 'data' must have one initialized field")
    if "text" in p and not isinstance(p["text"], str):
        raise errs.bad_value(f"{path}.text", "TYPE_STRING", p["text"])
    if "inlineData" in p:
        blob = fields(p["inlineData"], f"{path}.inline_data", {"mimeType", "data", "displayName"})
        try:
            base64.b64decode(str(blob.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise errs.bad_value(f"{path}.inline_data.data", "TYPE_BYTES", blob.get("data")) from None
        p["inlineData"] = blob
    if "fileData" in p:
        p["fileData"] = fields(p["fileData"], f"{path}.file_data", {"mimeType", "fileUri", "displayName"})
    if "functionCall" in p:
        fc = fields(p["functionCall"], f"{path}.function_call", {"id", "name", "args"})
        if not isinstance(fc.get("name"), str) or not fc["name"]:
            raise errs.field_error(f"{path}.function_call.name", "Name cannot be empty.")
        if not isinstance(fc.get("args", {}), dict):
            raise errs.bad_value(f"{path}.function_call.args", "TYPE_MESSAGE", fc.get("args"))
        p["functionCall"] = fc
    if "functionResponse" in p:
        keys = {"id", "name", "response", "parts", "willContinue", "scheduling"}
        fr = fields(p["functionResponse"], f"{path}.function_response", keys)
        if not isinstance(fr.get("name"), str) or not fr["name"]:
            raise errs.field_error(f"{path}.function_response.name", "Name cannot be empty.")
        if not isinstance(fr.get("response", {}), dict):
            raise errs.bad_value(f"{path}.function_response.response", "TYPE_MESSAGE", fr.get("response"))
        p["functionResponse"] = fr
    return p


def _contents(value: Any) -> list[dict[str, Any]]:
    if not value:
        raise errs.field_error("contents", "contents is not specified")
    if not isinstance(value, list):
        raise errs.bad_value("contents", "TYPE_MESSAGE", value)
    out = []
    for i, c in enumerate(value):
        content = fields(c, f"contents[{i}]", {"role", "parts"})
        role = content.get("role") or "user"
        if role not in ("user", "model"):
            raise errs.invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise errs.field_error(f"contents[{i}].parts", "contents.parts must not be empty.")
        out.append(
            {"role": role, "parts": [_part(p, f"contents[{i}].parts[{j}]") for j, p in enumerate(parts)]}
        )
    return out


def _calls(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in content["parts"] if "functionCall" in p]


def check_turns(contents: list[dict[str, Any]], model: str) -> None:
    for i, c in enumerate(contents):
        prev = contents[i - 1] if i else None
        responses = [p for p in c["parts"] if "functionResponse" in p]
        if responses:
            if prev is None or prev["role"] != "model" or not _calls(prev):
                raise errs.invalid(
                    "Please ensure that function response turn comes immediately after a function call turn."
                )
            if len(responses) != len(_calls(prev)):
                raise errs.invalid(
                    "Please ensure that the number of function response parts is equal to the number of "
                    "function call parts of the function call turn."
                )
        if c["role"] == "model" and _calls(c) and (prev is None or prev["role"] != "user"):
            raise errs.invalid(
                "Please ensure that function call turn comes immediately after a user turn or after a "
                "function response turn."
            )
    if model.startswith("gemini-3"):
        _check_signatures(contents)


def _check_signatures(contents: list[dict[str, Any]]) -> None:
    """Gemini 3: each step of the current turn must return its first call's thought signature."""
    start = 0
    for i, c in enumerate(contents):
        if c["role"] == "user" and any("text" in p for p in c["parts"]):
            start = i
    for i, c in enumerate(contents[start:], start):
        calls = _calls(c)
        if c["role"] == "model" and calls and not calls[0].get("thoughtSignature"):
            name = calls[0]["functionCall"]["name"]
            raise errs.invalid(
                "Function call is missing a thought_signature in functionCall parts. This is required for "
                "tools to work correctly, and missing thought_signature may lead to degraded model "
                f"performance. Additional data, function call `default_api:{name}` , position {i + 1}."
                f" Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures"
                " for more details."
            )


def _functions(value: Any) -> list[Function]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errs.bad_value("tools", "TYPE_MESSAGE", value)
    out: list[Function] = []
    for i, t in enumerate(value):
        tool = fields(t, f"tools[{i}]", TOOL)
        for j, d in enumerate(tool.get("functionDeclarations") or []):
            path = f"tools[{i}].function_declarations[{j}]"
            decl = fields(d, path, DECL)
            name = decl.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise errs.field_error(
                    f"{path}.name",
                    "Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, "
                    "0-9, or contain underscores, dots, colons and dashes, with a maximum length of 128.",
                )
            if isinstance(decl.get("parametersJsonSchema"), dict):
                schema = decl["parametersJsonSchema"]
            elif decl.get("parameters") is not None:
                schema = json_schema(decl["parameters"], f"{path}.parameters", top_parameters=True)
            else:
                schema = {}
            out.append(Function(name, schema))
    return out


def _number(g: dict[str, Any], key: str, path: str, kind: str) -> Any:
    v = g.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
        raise errs.bad_value(f"{path}.{key}", kind, v)
    if kind == "TYPE_INT32" and v is not None and not float(v).is_integer():
        raise errs.bad_value(f"{path}.{key}", kind, v)
    return v


def parse_generate(body: Any, model: str) -> GenerateRequest:
    if not isinstance(body, dict):
        raise errs.unparseable()
    b = fields(body, "", TOP)
    contents = _contents(b.get("contents"))
    check_turns(contents, model)
    req = GenerateRequest(model=model, contents=contents)
    if b.get("systemInstruction") is not None:
        sys_content = fields(b["systemInstruction"], "system_instruction", {"role", "parts"})
        parts = [
            _part(p, f"system_instruction.parts[{j}]") for j, p in enumerate(sys_content.get("parts") or [])
        ]
        req.system = " ".join(p["text"] for p in parts if "text" in p)
    req.functions = _functions(b.get("tools"))
    if b.get("toolConfig") is not None:
        tc = fields(b["toolConfig"], "tool_config", {"functionCallingConfig", "retrievalConfig"})
        fcc = fields(tc.get("functionCallingConfig") or {}, "tool_config.function_calling_config",
                     {"mode", "allowedFunctionNames"})  # fmt: skip
        mode = str(fcc.get("mode") or "AUTO").upper()
        if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
            raise errs.bad_value("tool_config.function_calling_config.mode", "TYPE_ENUM", fcc.get("mode"))
        req.mode, req.allowed = mode, list(fcc.get("allowedFunctionNames") or [])
        if req.allowed and mode != "ANY":
            raise errs.field_error(
                "tool_config.function_calling_config.allowed_function_names",
                "allowed_function_names may only be set when mode is ANY",
            )
    g = fields(b.get("generationConfig") or {}, "generation_config", GEN)
    for key in ("temperature", "topP", "presencePenalty", "frequencyPenalty"):
        _number(g, key, "generation_config", "TYPE_FLOAT")
    for key in ("topK", "candidateCount", "maxOutputTokens", "seed"):
        _number(g, key, "generation_config", "TYPE_INT32")
    temperature = g.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise errs.field_error("generation_config.temperature", "must be in the range [0, 2]")
    req.candidates = int(g.get("candidateCount") or 1)
    if not 1 <= req.candidates <= 8:
        raise errs.field_error("generation_config.candidate_count", "must be in the range [1, 8]")
    req.max_output_tokens = g.get("maxOutputTokens")
    stop = g.get("stopSequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 5:
        raise errs.bad_value("generation_config.stop_sequences", "TYPE_STRING", stop)
    req.stop = tuple(stop)
    req.mime = str(g.get("responseMimeType") or "text/plain")
    if req.mime not in MIME_TYPES:
        raise errs.field_error(
            "generation_config.response_mime_type",
            "allowed mimetypes are `text/plain`, `application/json`, `text/x.enum`.",
        )
    if g.get("responseSchema") is not None:
        req.schema = json_schema(g["responseSchema"], "generation_config.response_schema")
    elif isinstance(g.get("responseJsonSchema"), dict):
        req.schema = g["responseJsonSchema"]
    if req.schema is not None and req.mime == "text/plain":
        raise errs.field_error(
            "generation_config.response_mime_type",
            "response_mime_type must be application/json or text/x.enum when response_schema is set.",
        )
    return req
