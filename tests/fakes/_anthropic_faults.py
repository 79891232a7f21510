"""Fault specs of the fake Anthropic: those of the fake OpenAI (see _faults.py) plus
``stream_error_after=N``: after N events of a stream, an ``event: error`` (``overloaded_error``
unless ``stream_error_status`` names another status) and the end of the stream."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from tests.fakes._faults import Fault, FaultSpecError


@dataclass(frozen=True)
class AnthropicFault(Fault):
    stream_error_after: int | None = None
    stream_error_status: int = 529

    @classmethod
    def parse(cls, spec: str) -> AnthropicFault:
        own: dict[str, int] = {}
        rest = []
        for item in filter(None, (part.strip() for part in re.split(r"[;,]", spec))):
            key, _, raw = item.partition("=")
            if key.strip() in ("stream_error_after", "stream_error_status"):
                try:
                    own[key.strip()] = int(raw)
                except ValueError as exc:
                    raise FaultSpecError(f"bad value for fault {key.strip()!r}: {raw!r}") from exc
            else:
                rest.append(item)
        base = Fault.parse(";".join(rest))
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Fault)}, **own)


def coerce(fault: Fault | str | None) -> AnthropicFault | None:
    if fault is None or isinstance(fault, AnthropicFault):
        return fault
    if isinstance(fault, Fault):
        return AnthropicFault(**{f.name: getattr(fault, f.name) for f in dataclasses.fields(Fault)})
    return AnthropicFault.parse(fault)
