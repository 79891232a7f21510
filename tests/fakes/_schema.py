"""JSON Schema helpers: deterministic sample values, and OpenAI's strict-mode schema rules."""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 12
_FORMAT_SAMPLES = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com",
}


class SchemaSampler:
    """Builds one value that conforms to a (simple) JSON Schema.

    Strings become `text` (or an enum/const/format sample), integers their minimum or 1, numbers their
    minimum or 1.5, booleans true, arrays `minItems` (at least 1) samples of `items`. Objects get their
    required properties, or every property when `all_properties` is set.
    """

    def __init__(self, root: dict[str, Any], *, text: str, all_properties: bool) -> None:
        self._root = root
        self._text = text
        self._all_properties = all_properties

    def sample(self) -> Any:
        return self._value(self._root, 0)

    def _value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self._value(_first_non_null(schema[key]), depth + 1)
        return self._typed(schema, _primary_type(schema), depth)

    def _typed(self, schema: dict[str, Any], type_: str | None, depth: int) -> Any:
        if type_ == "object" or (type_ is None and "properties" in schema):
            return self._object(schema, depth)
        if type_ == "array":
            count = max(1, int(schema.get("minItems", 1)))
            return [self._value(schema.get("items", {}), depth + 1) for _ in range(count)]
        if type_ == "integer":
            return _lower_bound(schema, 1, step=1)
        if type_ == "number":
            return _lower_bound(schema, 1.5, step=0.5)
        if type_ == "boolean":
            return True
        if type_ == "null":
            return None
        return self._string(schema)

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        required = _required(schema)
        names = list(properties) if self._all_properties else [n for n in properties if n in required]
        return {name: self._value(properties[name], depth + 1) for name in names}

    def _string(self, schema: dict[str, Any]) -> str:
        value = _FORMAT_SAMPLES.get(str(schema.get("format")), self._text)
        min_length = int(schema.get("minLength", 0))
        return value + "x" * max(0, min_length - len(value))

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self._root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}


def _required(schema: dict[str, Any]) -> list[str]:
    required = schema.get("required")
    return [str(name) for name in required] if isinstance(required, list) else []


def _first_non_null(options: list[Any]) -> Any:
    for option in options:
        if not (isinstance(option, dict) and option.get("type") == "null"):
            return option
    return options[0]


def _primary_type(schema: dict[str, Any]) -> str | None:
    type_ = schema.get("type")
    if isinstance(type_, list):
        non_null = [t for t in type_ if t != "null"]
        return str(non_null[0]) if non_null else "null"
    return str(type_) if isinstance(type_, str) else None


def _lower_bound(schema: dict[str, Any], default: float, *, step: float) -> Any:
    if isinstance(schema.get("minimum"), int | float):
        return schema["minimum"]
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        return schema["exclusiveMinimum"] + step
    if isinstance(schema.get("maximum"), int | float) and schema["maximum"] < default:
        return schema["maximum"]
    return int(default) if step == 1 else default


def sample_value(schema: dict[str, Any], *, text: str, all_properties: bool) -> Any:
    return SchemaSampler(schema, text=text, all_properties=all_properties).sample()


def strict_schema_problem(schema: Any, path: tuple[str, ...] = ()) -> str | None:
    """The first violation of OpenAI's strict structured-output rules, worded as OpenAI words it."""
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object" or "properties" in schema:
        problem = _strict_object_problem(schema, path)
        if problem:
            return problem
    for key, child in _children(schema):
        problem = strict_schema_problem(child, (*path, *key))
        if problem:
            return problem
    return None


def _strict_object_problem(schema: dict[str, Any], path: tuple[str, ...]) -> str | None:
    context = f"In context={path!r}, "
    if schema.get("additionalProperties") is not False:
        return context + "'additionalProperties' is required to be supplied and to be false."
    properties = schema.get("properties") or {}
    required = _required(schema)
    missing = [name for name in properties if name not in required]
    if missing:
        return (
            context + "'required' is required to be supplied and to be an array including every key in "
            f"properties. Missing '{missing[0]}'."
        )
    return None


def _children(schema: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    children: list[tuple[tuple[str, ...], Any]] = []
    for name, child in (schema.get("properties") or {}).items():
        children.append((("properties", name), child))
    if "items" in schema:
        children.append((("items",), schema["items"]))
    for key in ("anyOf", "oneOf", "allOf"):
        for i, child in enumerate(schema.get(key) or []):
            children.append(((key, str(i)), child))
    for key in ("$defs", "definitions"):
        for name, child in (schema.get(key) or {}).items():
            children.append(((key, name), child))
    return children
