"""ISO 8601 UTC times as the APIs show them (`Z`, not `+00:00`)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ts: float, timespec: str = "auto") -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
