"""Wire helpers of the Gemini dialect: field names, Google-style validation errors, and Gemini's
Schema -> JSON Schema.

Google's JSON parser accepts a proto field under its JSON name (``systemInstruction``) and its
original name (``system_instruction``); its own REST examples use the latter. So do we: every
message object is read through ``fields``, which folds snake_case names to camelCase. Names that
are data, not fields (function arguments, schema property names), are never folded.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from stellargate.dialects.validate import is_integer, is_number
from stellargate.errors import InvalidRequest


def camel(name: str) -> str:
    if "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def invalid(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def field_error(path: str, message: str) -> InvalidRequest:
    """Google's form for a semantic error: ``* GenerateContentRequest.<path>: <message>``."""
    return invalid(f"* GenerateContentRequest.{path}: {message}\n", param=path)


def fields(value: Any, path: str, known: Collection[str]) -> dict[str, Any]:
    """A message object with camelCase keys; an unknown key is Google's "Cannot find field"."""
    if not isinstance(value, dict):
        where = f" at '{path}'" if path else ""
        raise invalid(f"Invalid JSON payload received. Expected an object{where}.", param=path or None)
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = camel(str(k))
        if name not in known:
            where = f" at '{path}'" if path else ""
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{k}"{where}: Cannot find field.',
                param=f"{path}.{k}" if path else str(k),
            )
        out[name] = v
    return out


def value_error(path: str, kind: str, value: Any) -> InvalidRequest:
    """Google's form for a wrongly typed value: ``Invalid value at 'x' (TYPE_FLOAT), "hot"``."""
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return invalid(f"Invalid value at '{path}' ({kind}), {shown}", param=path)


def number(obj: dict[str, Any], key: str, path: str, lo: float, hi: float) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if not is_number(v):
        raise value_error(f"{path}.{snake(key)}", "TYPE_FLOAT", v)
    if not lo <= v <= hi:
        raise field_error(f"{path}.{snake(key)}", f"must be in the range [{lo:g}, {hi:g}]")
    return float(v)


def integer(obj: dict[str, Any], key: str, path: str, lo: int, hi: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, str) and v.lstrip("-").isdigit():
        v = int(v)  # proto3 JSON writes 64-bit integers as strings
    if not is_integer(v):
        raise value_error(f"{path}.{snake(key)}", "TYPE_INT32", v)
    if v < lo or (hi is not None and v > hi):
        bound = f"at least {lo}" if hi is None else f"in the range [{lo}, {hi}]"
        raise field_error(f"{path}.{snake(key)}", f"must be {bound}")
    return v


def string(obj: dict[str, Any], key: str, path: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise value_error(f"{path}.{snake(key)}", "TYPE_STRING", v)
    return v


SCHEMA_FIELDS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
    }
)  # fmt: skip
_INT_FIELDS = ("maxItems", "minItems", "minProperties", "maxProperties", "minLength", "maxLength")


def json_schema(value: Any, path: str) -> dict[str, Any]:
    """A Gemini ``Schema`` (OpenAPI 3.0 subset, upper-case types, ``nullable``) as JSON Schema."""
    s = fields(value, path, SCHEMA_FIELDS)
    out: dict[str, Any] = {}
    t = s.get("type")
    if t is not None:
        if not isinstance(t, str) or t.upper() not in (
            "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "TYPE_UNSPECIFIED",
        ):  # fmt: skip
            raise value_error(f"{path}.type", "TYPE_ENUM", t)
        if t.upper() != "TYPE_UNSPECIFIED":
            out["type"] = t.lower()
    if s.get("nullable") is True and isinstance(out.get("type"), str) and out["type"] != "null":
        out["type"] = [out["type"], "null"]
    for key in ("format", "title", "description", "pattern", "minimum", "maximum", "default", "example"):
        if key in s and not (key == "format" and s[key] == "enum"):
            out[key] = s[key]
    for key in _INT_FIELDS:
        n = integer(s, key, path, 0)
        if n is not None:
            out[key] = n
    if isinstance(s.get("enum"), list):
        out["enum"] = list(s["enum"])
    if "properties" in s:
        props = s["properties"]
        if not isinstance(props, dict):
            raise value_error(f"{path}.properties", "TYPE_MESSAGE", props)
        out["properties"] = {str(k): json_schema(v, f"{path}.properties[{k}]") for k, v in props.items()}
    for key in ("required", "propertyOrdering"):
        if isinstance(s.get(key), list):
            out[key] = [str(x) for x in s[key]]
    if "items" in s:
        out["items"] = json_schema(s["items"], f"{path}.items")
    if isinstance(s.get("anyOf"), list):
        out["anyOf"] = [json_schema(x, f"{path}.any_of[{i}]") for i, x in enumerate(s["anyOf"])]
    return out
