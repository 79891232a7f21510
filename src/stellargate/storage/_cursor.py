"""Opaque pagination cursors: base64url of a small JSON array, so callers cannot depend on their shape."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; ValueError for anything a client could have tampered with."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as e:
        raise ValueError("invalid cursor") from e
    if not isinstance(values, list) or len(values) != len(types):
        raise ValueError("invalid cursor")
    out: list[Any] = []
    for value, typ in zip(values, types, strict=True):
        # JSON has one number type: a float cursor field may come back as an int (e.g. 1700000000.0).
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ValueError("invalid cursor")
        out.append(value)
    return out
