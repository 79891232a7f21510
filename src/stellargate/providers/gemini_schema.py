"""JSON Schema -> the Schema subset Gemini accepts (function parameters and responseSchema).

Gemini's ``Schema`` is a select subset of the OpenAPI 3.0 schema object, and the API refuses a
keyword it does not know (``Unknown name "additionalProperties" ... Cannot find field``). So the
conversion is an explicit allow-list, not a deny-list: a keyword JSON Schema grows tomorrow is
dropped, never forwarded into a 400.

Kept (``KEPT``): type, format (see below), title, description, nullable, enum, default, example,
properties, required, propertyOrdering, items, minItems, maxItems, minProperties, maxProperties,
minLength, maxLength, pattern, minimum, maximum, anyOf.

Rewritten, because Gemini has another spelling for the same meaning:
* ``type: [T, "null"]`` and ``anyOf: [S, {type: null}]`` -> ``nullable: true`` (a list of several
  non-null types becomes ``anyOf``); ``type`` is sent in Gemini's upper-case enum names;
* ``const: v`` -> ``enum: [v]``; ``oneOf`` -> ``anyOf`` (for generation the two coincide);
  an ``allOf`` of exactly one schema is that schema;
* ``$ref`` into ``$defs``/``definitions`` is inlined (Gemini has no references); a recursive
  reference ends, at ``MAX_DEPTH``, in an untyped node with its description;
* ``required`` keeps only names that are in ``properties`` (Gemini refuses the others);
* ``format`` only where Gemini supports it: date-time/enum on strings, float/double on numbers,
  int32/int64 on integers; ``enum`` only of strings (Gemini's enum is a string list).

Dropped, deliberately: everything else — ``$schema``, ``$id``, ``$comment``, ``additionalProperties``,
``patternProperties``, ``unevaluatedProperties``, ``propertyNames``, ``dependentRequired``,
``const``/``oneOf``/``allOf`` left after rewriting, ``not``, ``if``/``then``/``else``,
``exclusiveMinimum``/``exclusiveMaximum``, ``multipleOf``, ``uniqueItems``, ``contains``,
``prefixItems``, ``examples``, ``readOnly``/``writeOnly``/``deprecated``, ``strict``, and any
vendor extension.
"""

from __future__ import annotations

from typing import Any

KEPT = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "default", "example",
        "properties", "required", "propertyOrdering", "items", "minItems", "maxItems",
        "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "minimum",
        "maximum", "anyOf",
    }
)  # fmt: skip
MAX_DEPTH = 24
_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_FORMATS = {
    "STRING": frozenset({"date-time", "enum"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_INTS = ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength")


def to_gemini_schema(schema: Any) -> dict[str, Any]:
    """The Gemini Schema for a JSON Schema (a new object; the input is not modified)."""
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": s for name, s in schema[key].items()})
    return _Converter(defs).node(schema, 0)


def is_empty_object(schema: dict[str, Any]) -> bool:
    """An OBJECT without properties: Gemini refuses it as function parameters."""
    return schema.get("type") == "OBJECT" and not schema.get("properties")


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs

    def node(self, s: Any, depth: int) -> dict[str, Any]:
        if not isinstance(s, dict):
            return {}
        if depth > MAX_DEPTH:
            return {"description": s.get("description") or "(nested too deeply to describe)"}
        s = self._deref(s, depth)
        out: dict[str, Any] = {}
        self._type(s, out, depth)
        for key in ("title", "description", "pattern"):
            if isinstance(s.get(key), str):
                out[key] = s[key]
        for key in ("default", "example"):
            if key in s:
                out[key] = s[key]
        for key in ("minimum", "maximum"):
            v = s.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[key] = v
        for key in _INTS:
            v = s.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                out[key] = v
        self._enum(s, out)
        self._format(s, out)
        self._object(s, out, depth)
        if isinstance(s.get("items"), dict):
            out["items"] = self.node(s["items"], depth + 1)
        if s.get("nullable") is True:
            out["nullable"] = True
        return out

    def _deref(self, s: dict[str, Any], depth: int) -> dict[str, Any]:
        ref = s.get("$ref")
        if isinstance(ref, str) and ref in self._defs and isinstance(self._defs[ref], dict):
            # Sibling keywords of $ref (a description, say) refine the referenced schema.
            merged = {**self._defs[ref], **{k: v for k, v in s.items() if k != "$ref"}}
            return self._deref(merged, depth + 1) if depth < MAX_DEPTH else merged
        all_of = s.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            rest = {k: v for k, v in s.items() if k != "allOf"}
            return self._deref({**all_of[0], **rest}, depth)
        return s

    def _type(self, s: dict[str, Any], out: dict[str, Any], depth: int) -> None:
        t = s.get("type")
        types = (
            [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if isinstance(t, list) else []
        )
        if "null" in types:
            out["nullable"] = True
            types = [x for x in types if x != "null"]
        named = [_TYPES[x] for x in types if x in _TYPES]
        if len(named) == 1:
            out["type"] = named[0]
        elif len(named) > 1:
            out["anyOf"] = [{"type": x} for x in named]
        options = s.get("anyOf") if isinstance(s.get("anyOf"), list) else s.get("oneOf")
        if isinstance(options, list) and "anyOf" not in out:
            nulls = [o for o in options if isinstance(o, dict) and o.get("type") == "null"]
            rest = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
            if nulls:
                out["nullable"] = True
            if len(rest) == 1:
                # `anyOf: [S, null]` is a nullable S: say it the way Gemini does.
                inner = self.node(rest[0], depth + 1)
                out.update({k: v for k, v in inner.items() if k not in out})
            elif rest:
                out["anyOf"] = [self.node(o, depth + 1) for o in rest]

    def _enum(self, s: dict[str, Any], out: dict[str, Any]) -> None:
        values = s.get("enum")
        if "const" in s and not isinstance(values, list):
            values = [s["const"]]
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            out["enum"] = list(values)
            out.setdefault("type", "STRING")

    def _format(self, s: dict[str, Any], out: dict[str, Any]) -> None:
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = fmt

    def _object(self, s: dict[str, Any], out: dict[str, Any], depth: int) -> None:
        props = s.get("properties")
        if not isinstance(props, dict):
            return
        out["properties"] = {str(k): self.node(v, depth + 1) for k, v in props.items()}
        out.setdefault("type", "OBJECT")
        req = s.get("required")
        if isinstance(req, list):
            names = [r for r in req if isinstance(r, str) and r in props]
            if names:
                out["required"] = names
        order = s.get("propertyOrdering")
        if isinstance(order, list) and all(isinstance(x, str) and x in props for x in order):
            out["propertyOrdering"] = list(order)
