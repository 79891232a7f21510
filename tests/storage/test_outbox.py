from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellargate.storage import spill
from stellargate.storage.db import Database
from stellargate.storage.outbox import UsageOutbox

from .factories import usage
from .outbox_helpers import SwitchableLedger, eventually, stored_ids


async def test_flushes_in_batches(db: Database, tmp_path: Path) -> None:
    ledger = SwitchableLedger(db.usage)
    ob = UsageOutbox(ledger, tmp_path / "spill", batch_size=500, flush_interval=0.05)
    await ob.start()
    try:
        for i in range(1200):
            ob.add(usage(i))
        assert ob.depth == 1200
        await eventually(lambda: ob.flushed_total == 1200, what="flush")
        assert ledger.batches == [500, 500, 200]
        assert ob.depth == 0
        assert sorted(await stored_ids(db)) == [usage(i).request_id for i in range(1200)]
    finally:
        await ob.close()


async def test_partial_batch_waits_for_interval(db: Database, tmp_path: Path) -> None:
    ledger = SwitchableLedger(db.usage)
    ob = UsageOutbox(ledger, tmp_path / "spill", batch_size=500, flush_interval=0.2)
    await ob.start()
    try:
        started = time.monotonic()
        for i in range(3):
            ob.add(usage(i))
        await eventually(lambda: ob.flushed_total == 3, what="flush")
        assert time.monotonic() - started >= 0.1  # the interval, not a write per record
        assert ledger.batches == [3]
    finally:
        await ob.close()


async def test_close_flushes_what_is_left(db: Database, tmp_path: Path) -> None:
    ob = UsageOutbox(db.usage, tmp_path / "spill", flush_interval=3600)
    await ob.start()
    for i in range(10):
        ob.add(usage(i))
    await ob.close()
    assert len(await stored_ids(db)) == 10
    assert ob.depth == 0
    assert spill.pending_files(tmp_path / "spill") == 0
    with pytest.raises(RuntimeError, match="closed"):
        ob.add(usage(99))
    await ob.close()  # idempotent


async def test_records_added_before_start_are_kept(db: Database, tmp_path: Path) -> None:
    ob = UsageOutbox(db.usage, tmp_path / "spill", flush_interval=0.05)
    ob.add(usage(1))
    await ob.start()
    await eventually(lambda: ob.flushed_total == 1)
    await ob.close()
    assert await stored_ids(db) == [usage(1).request_id]


async def test_failures_retry_in_memory(db: Database, tmp_path: Path) -> None:
    ledger = SwitchableLedger(db.usage)
    ob = UsageOutbox(
        ledger, tmp_path / "spill", flush_interval=0.02, backoff_initial=0.05, backoff_max=0.2, spill_after=60
    )
    await ob.start()
    try:
        ledger.down = True
        for i in range(50):
            ob.add(usage(i))
        await eventually(lambda: ob.failures_total >= 3, what="retries")
        assert not ob.healthy
        assert ob.last_error is not None
        assert "ConnectionRefusedError" in ob.last_error
        assert ob.depth == 50
        ledger.down = False
        await eventually(lambda: ob.depth == 0, what="recovery")
        assert ob.healthy
        assert ob.spilled_records == 0
        assert len(await stored_ids(db)) == 50
    finally:
        await ob.close()


async def test_overfull_buffer_spills_without_waiting(db: Database, tmp_path: Path) -> None:
    ledger = SwitchableLedger(db.usage)
    spill_dir = tmp_path / "spill"
    ob = UsageOutbox(
        ledger, spill_dir, batch_size=20, max_buffer=100, backoff_initial=30, backoff_max=30, spill_after=60
    )
    await ob.start()
    try:
        ledger.down = True
        ob.add(usage(0))
        ob._wake.set()  # flush now, so that the outbox is in (long) backoff
        await eventually(lambda: ob.failures_total == 1, what="first failure")
        for i in range(1, 150):
            ob.add(usage(i))
        await eventually(lambda: ob.spilled_records == 150, what="spill")
        assert ob.depth == 0
        assert spill.pending_files(spill_dir) == 1
    finally:
        ledger.down = False
        await ob.close()
    # Replayed by the next start.
    ob2 = UsageOutbox(db.usage, spill_dir)
    await ob2.start()
    await ob2.close()
    assert len(await stored_ids(db)) == 150
    assert spill.pending_files(spill_dir) == 0


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return int(proc.stdout)


async def test_leftovers_of_a_crash_are_replayed_at_start(db: Database, tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    first = spill.write_spill(spill_dir, [usage(i) for i in range(0, 100)])
    second = spill.write_spill(spill_dir, [usage(i) for i in range(90, 150)])  # overlaps the first
    await db.usage.insert_many([usage(i) for i in range(140, 150)])  # committed before the "crash"
    dead = _dead_pid()
    # A claim whose replayer died, and a half-written file of a process that died mid-spill.
    claimed = spill_dir / f"{first.name}.claimed-{dead}"
    first.rename(claimed)
    torn = spill_dir / f"usage-{dead}-feedbeef.jsonl.tmp"
    lines = spill.write_spill(tmp_path / "scratch", [usage(i) for i in range(150, 160)]).read_bytes()
    torn.write_bytes(lines + lines.splitlines(keepends=True)[0][:40])

    ob = UsageOutbox(db.usage, spill_dir)
    await ob.start()
    await ob.close()
    assert sorted(await stored_ids(db)) == [usage(i).request_id for i in range(160)]
    assert ob.replayed_records == 100 + 60 + 10
    assert not claimed.exists()
    assert not second.exists()
    assert list(spill_dir.iterdir()) == []


async def test_files_of_live_processes_are_left_alone(db: Database, tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    live = os.getppid()  # certainly alive, and not us
    path = spill.write_spill(spill_dir, [usage(1)])
    claimed = spill_dir / f"{path.name}.claimed-{live}"
    path.rename(claimed)
    writing = spill_dir / f"usage-{live}-0123.jsonl.tmp"
    writing.write_bytes(b"")
    ob = UsageOutbox(db.usage, spill_dir)
    await ob.start()
    await ob.close()
    assert claimed.exists()
    assert writing.exists()
    assert await stored_ids(db) == []


_REPLAY_SCRIPT = """
import asyncio, sys
from pathlib import Path
from stellargate.storage.db import Database
from stellargate.storage.outbox import UsageOutbox

async def main(url, spill_dir):
    db = await Database.connect(url)
    try:
        ob = UsageOutbox(db.usage, Path(spill_dir))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await ob.start()
        await ob.close()
        print(ob.replayed_records, flush=True)
    finally:
        await db.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_never_replay_the_same_file(db: Database, db_url: str, tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    for f in range(20):
        spill.write_spill(spill_dir, [usage(f * 100 + i) for i in range(100)])
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _REPLAY_SCRIPT,
            db_url,
            str(spill_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    async with asyncio.timeout(30):
        for p in procs:
            assert p.stdout is not None
            assert await p.stdout.readline() == b"ready\n"
        results = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))
    replayed = []
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
        replayed.append(int(out))
    # Each file went to exactly one process: a file replayed twice would count twice.
    assert sum(replayed) == 2000
    assert len(await stored_ids(db)) == 2000
    assert list(spill_dir.iterdir()) == []


async def test_add_is_cheap(tmp_path: Path) -> None:
    ob = UsageOutbox(SwitchableLedger(None), tmp_path, max_buffer=10**9)  # type: ignore[arg-type]
    rec = usage(1)
    add = ob.add
    n = 200_000
    best = float("inf")
    for _ in range(3):
        ob._buf.clear()
        started = time.perf_counter()
        for _ in range(n):
            add(rec)
        best = min(best, (time.perf_counter() - started) / n)
    ob._buf.clear()
    assert best < 2e-6, f"add() took {best * 1e9:.0f} ns"
