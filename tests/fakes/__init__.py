"""Test doubles for StellarGate's upstreams.

`FakeOpenAI` and `RecordedRequest` are imported lazily, so that `python -m tests.fakes.openai_upstream`
does not import that module twice (once via this package, once as __main__).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes._faults import FAULT_HEADER, FAULT_MARKER, Fault, fault_marker

if TYPE_CHECKING:
    from tests.fakes.openai_upstream import FakeOpenAI, RecordedRequest

__all__ = ["FAULT_HEADER", "FAULT_MARKER", "FakeOpenAI", "Fault", "RecordedRequest", "fault_marker"]


def __getattr__(name: str) -> Any:
    if name in ("FakeOpenAI", "RecordedRequest"):
        from tests.fakes import openai_upstream

        return getattr(openai_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
