"""Fault injection specs: `status=429`, `slow_first_byte=2`, `stall_after=3`, `drop_after=1`, `bad_json`...

A spec is one or more items separated by `;` or `,`, e.g. `"slow_first_byte=0.5;status=503"`. Per request
it comes from the `x-fake-fault` header, or from a `[[fault:SPEC]]` marker in the body (which reaches the
fake through a gateway that does not forward unknown headers).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

FAULT_HEADER = "x-fake-fault"
FAULT_MARKER = re.compile(r"\[\[fault:([^\]]*)\]\]")  # "[[fault:status=500]]" inside a message / input


class FaultSpecError(ValueError):
    """A malformed fault spec (a bug in the test, answered with a 400 `fake_fault_error`)."""


@dataclass(frozen=True)
class Fault:
    """What to do wrong. `times` only matters for the server-wide fault: it expires after that many uses."""

    status: int | None = None
    retry_after: float = 1.0
    slow_first_byte: float = 0.0
    stall_after: int | None = None
    drop_after: int | None = None
    bad_json: bool = False
    chunk_delay: float | None = None
    # A named error from the fake's catalog (`error=overflow`: the provider's own context-overflow
    # 400; the OpenAI fake also speaks for compatible servers, `error=overflow_vllm`, ...).
    error: str | None = None
    times: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in re.split(r"[;,]", spec))):
            key, _, raw = item.partition("=")
            values[key.strip()] = _convert(key.strip(), raw.strip())
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_noop(self) -> bool:
        return self == Fault(times=self.times)


_INT_FIELDS = {"status", "stall_after", "drop_after", "times"}
_FLOAT_FIELDS = {"retry_after", "slow_first_byte", "chunk_delay"}
_FLAG_FIELDS = {"bad_json"}
_STR_FIELDS = {"error"}


def _convert(key: str, raw: str) -> object:
    try:
        if key in _FLAG_FIELDS:
            return raw.lower() not in ("0", "false", "no")
        if key in _STR_FIELDS:
            if not raw:
                raise FaultSpecError(f"fault {key!r} needs a name")
            return raw
        if key in _INT_FIELDS:
            value: float = int(raw)
        elif key in _FLOAT_FIELDS:
            value = float(raw)
        else:
            known = ", ".join(f.name for f in dataclasses.fields(Fault))
            raise FaultSpecError(f"unknown fault {key!r} (known: {known})")
    except ValueError as exc:
        if isinstance(exc, FaultSpecError):
            raise
        raise FaultSpecError(f"bad value for fault {key!r}: {raw!r}") from exc
    if value < 0:
        raise FaultSpecError(f"fault {key!r} must not be negative")
    return value


def coerce_fault(fault: Fault | str | None) -> Fault | None:
    if fault is None or isinstance(fault, Fault):
        return fault
    return Fault.parse(fault)


def fault_marker(spec: str) -> str:
    """Text to put in a prompt so the fake applies `spec` to that request, e.g. fault_marker("status=500")."""
    return f"[[fault:{spec}]]"
