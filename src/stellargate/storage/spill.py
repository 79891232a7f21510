"""Spill files: usage records parked on local disk while the database cannot take them.

Blocking file I/O throughout; the outbox calls these through `asyncio.to_thread`.

Life of a file, each step an atomic rename within one directory:

    usage-<pid>-<uuid>.jsonl.tmp            being written (only ever by process <pid>)
    usage-<pid>-<uuid>.jsonl                complete and fsynced: a record here is acknowledged
    usage-<pid>-<uuid>.jsonl.claimed-<c>    being replayed by process <c>; deleted after commit

Claiming by rename means two processes never replay one file at the same time. A claim or a
.tmp left by a process that died is released by the next `recover_orphans`; the worst case of a
wrong guess (pid reuse) is a file replayed twice, which the ledger's idempotent insert absorbs.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import orjson

from stellargate.core.usage import UsageRecord

log = logging.getLogger("stellargate.outbox")

_PREFIX = "usage-"
_SUFFIX = ".jsonl"
_TMP = ".tmp"
_CLAIMED = ".claimed-"


def write_spill(spill_dir: Path, records: Sequence[UsageRecord]) -> Path:
    """Write `records` durably to a new spill file; returns its path once it is safe on disk."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    final = spill_dir / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{_SUFFIX}"
    tmp = final.with_name(final.name + _TMP)
    # default=str: a stray non-JSON value in meta must not make the whole file unwritable.
    data = b"".join(
        orjson.dumps(rec.to_dict(), default=str, option=orjson.OPT_APPEND_NEWLINE) for rec in records
    )
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(spill_dir)
    return final


def claim_spill_files(spill_dir: Path) -> list[Path]:
    """Claim every complete spill file for this process, oldest name first."""
    if not spill_dir.is_dir():
        return []
    claimed: list[Path] = []
    for path in sorted(spill_dir.glob(f"{_PREFIX}*{_SUFFIX}")):
        target = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue  # another process claimed it first
        claimed.append(target)
    return claimed


def read_spill(path: Path) -> tuple[list[UsageRecord], int]:
    """The records in a spill file, and how many lines could not be read (a torn last line, say)."""
    records: list[UsageRecord] = []
    bad = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(UsageRecord.from_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                bad += 1
    return records, bad


def release(paths: Sequence[Path]) -> None:
    """Give claimed files back (replay failed), so this or another process retries them later."""
    for path in paths:
        try:
            os.rename(path, _unclaimed(path))
        except FileNotFoundError:
            pass


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def recover_orphans(spill_dir: Path) -> int:
    """Release claims and publish .tmp files left by processes that are gone; returns how many."""
    if not spill_dir.is_dir():
        return 0
    recovered = 0
    me = os.getpid()
    for path in spill_dir.glob(f"{_PREFIX}*"):
        name = path.name
        if _CLAIMED in name:
            owner = _int_or_none(name.rsplit(_CLAIMED, 1)[1])
            target = _unclaimed(path)
        elif name.endswith(_SUFFIX + _TMP):
            owner = _int_or_none(name[len(_PREFIX) :].split("-", 1)[0])
            # Its complete lines are records nobody else has; a torn last line is skipped on read.
            target = path.with_name(name[: -len(_TMP)])
        else:
            continue
        # Our own pid on a file we did not make this run means an earlier process had our pid
        # (a container restart, typically).
        if owner is not None and owner != me and _alive(owner):
            continue
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue
        recovered += 1
    if recovered:
        log.warning("recovered %d spill file(s) left by processes that exited", recovered)
    return recovered


def pending_files(spill_dir: Path) -> int:
    """Complete spill files not yet committed: waiting, or being replayed (for metrics and tests).
    A claimed file counts: until its records are committed it is what holds them."""
    if not spill_dir.is_dir():
        return 0
    return sum(1 for p in spill_dir.glob(f"{_PREFIX}*") if p.name.endswith(_SUFFIX) or _CLAIMED in p.name)


def _unclaimed(path: Path) -> Path:
    return path.with_name(path.name.rsplit(_CLAIMED, 1)[0])


def _int_or_none(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no cheap, safe probe; leave the file for its owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    # The rename itself must survive a power cut, not just the file's bytes.
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
