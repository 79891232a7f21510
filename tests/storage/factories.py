"""Small builders for storage tests."""

from __future__ import annotations

from typing import Any

from stellargate.core.usage import UsageRecord
from stellargate.storage.records import KeyRecord

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def usage(i: int, **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": f"req_{i:06d}",
        "created_at": T0 + i,
        "key_id": "key_a",
        "endpoint": "chat",
        "dialect": "openai",
        "model": "gpt-4o",
        "provider": "openai",
        "upstream_model": "gpt-4o-2024-08-06",
        "status": 200,
        "streamed": False,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.25,
        "latency_ms": 100.0,
        "meta": {"i": i},
    }
    fields.update(kw)
    return UsageRecord(**fields)


def key(i: int, **kw: Any) -> KeyRecord:
    fields: dict[str, Any] = {
        "id": f"key_{i:024x}",
        "name": f"key {i}",
        "key_hash": f"{i:064x}",
        "prefix": f"sg-{i:08d}",
        "created_at": T0 + i,
        "updated_at": T0 + i,
    }
    fields.update(kw)
    return KeyRecord(**fields)
