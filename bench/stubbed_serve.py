"""``stellargate serve`` with parts of the limits stage stubbed out, for ``limits_callgrind.sh``:
what the limited key costs without a part is what that part costs. Never for serving.

    STUB=headers,tok,settle,reserve,worst python bench/stubbed_serve.py serve --config FILE
"""

from __future__ import annotations

import os
import sys
from typing import Any

import stellargate.pipeline.estimate as estimate
import stellargate.pipeline.limits as limits
from stellargate.cli import main
from stellargate.counters import Decision

stubs = set(os.environ.get("STUB", "").split(","))
if "headers" in stubs:  # no rate-limit headers built or sent
    limits.rate_headers = lambda call, d: []
if "tok" in stubs:  # a tokenizer that costs nothing

    class _Free:
        def count(self, text: str) -> int:
            return len(text) // 4

    estimate._tokenizers["cl100k_base"] = estimate._tokenizers["o200k_base"] = _Free()
if "worst" in stubs:  # no prompt count at all
    limits.worst_case = lambda payload, req, target, encoding=None: (300, 256, 0)  # type: ignore[attr-defined]
if "settle" in stubs:
    limits._Settlement.__call__ = lambda self, completed=True: None  # type: ignore[method-assign]
if "reserve" in stubs:
    _init = limits.LimitStage.__init__

    def _admit(items: list[Any], token: str) -> Decision:
        return Decision(True, -1, 0.0, [1.0] * len(items), [0.0] * len(items))

    def _init_stubbed(self: Any, lim: Any) -> None:
        _init(self, lim)
        self._reserve_now = _admit

    limits.LimitStage.__init__ = _init_stubbed  # type: ignore[method-assign,assignment]

sys.exit(main(sys.argv[1:]))
