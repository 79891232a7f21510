"""Validation shared by the dialects' request parsers.

The predicates at the top are dialect-neutral. The checks below them word their errors as OpenAI
does, and are shared by its chat, legacy completions, embeddings and images parsers: a wrong type
is a schema error (422, ``invalid_type``), a value out of range an invalid parameter (400,
``invalid_value``), each naming the offending ``param``. Anthropic and Gemini word their errors
their own way (``anthropic_parse``, ``gemini_wire``) and share only the predicates.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from stellargate.errors import InvalidRequest, SchemaError


def is_number(v: Any) -> bool:
    """An int or a float; JSON's true and false are not numbers."""
    return not isinstance(v, bool) and isinstance(v, int | float)


def is_integer(v: Any) -> TypeGuard[int]:
    return not isinstance(v, bool) and isinstance(v, int)


def is_tokens(v: Any) -> bool:
    """A non-empty array of token ids."""
    return isinstance(v, list) and bool(v) and all(is_integer(t) for t in v)


# -- OpenAI's wording ---------------------------------------------------------------------------


def type_error(param: str, expected: str) -> SchemaError:
    return SchemaError(f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


def missing(param: str) -> SchemaError:
    return SchemaError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def required_model(body: Any) -> str:
    """The body must be a JSON object naming a model."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    m = body.get("model")
    if m is None:
        raise missing("model")
    if not isinstance(m, str) or not m:
        raise type_error("model", "a non-empty string")
    return m


def number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if not is_number(v):
        raise type_error(key, "a number")
    if not lo <= v <= hi:
        raise InvalidRequest(
            f"Invalid '{key}': {v} is out of range; expected a value between {lo:g} and {hi:g}.",
            param=key,
            code="invalid_value",
        )
    return float(v)


def integer(body: dict[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if not is_integer(v):
        raise type_error(key, "an integer")
    if v < lo or (hi is not None and v > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise InvalidRequest(f"Invalid '{key}': expected {bound}, got {v}.", param=key, code="invalid_value")
    return v


def boolean(body: dict[str, Any], key: str) -> bool | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise type_error(key, "a boolean")
    return v


def optional_string(body: dict[str, Any], key: str) -> str | None:
    v = body.get(key)
    if v is None or isinstance(v, str):
        return v
    raise type_error(key, "a string")


def optional_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = body.get(key)
    if v is None or isinstance(v, dict):
        return v
    raise type_error(key, "an object")


def stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        if len(value) > 4:
            raise InvalidRequest("Invalid 'stop': at most 4 sequences.", param="stop", code="invalid_value")
        return value
    raise type_error("stop", "a string or an array of strings")
