"""The collector settings the server applies once start-up is done."""

from __future__ import annotations

import gc

from stellargate.gctune import THRESHOLDS, tune_gc


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    survivor = [object() for _ in range(1000)]  # something start-up made and keeps
    try:
        tune_gc()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() >= len(survivor)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
