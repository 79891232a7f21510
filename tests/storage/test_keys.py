from __future__ import annotations

import time

import pytest

from stellargate.storage.db import Database
from stellargate.storage.keys import DuplicateKeyError, _to_row
from stellargate.storage.tables import api_keys

from .factories import T0, key


async def test_create_get_and_get_by_hash(db: Database) -> None:
    rec = key(1, models=["gpt-4o*", "claude-*"], scopes=["chat"], metadata={"team": "ml", "n": 3})
    await db.keys.create(rec)
    assert await db.keys.get(rec.id) == rec
    assert await db.keys.get_by_hash(rec.key_hash) == rec
    assert await db.keys.get("key_missing") is None
    assert await db.keys.get_by_hash("0" * 64) is None


async def test_duplicate_id_or_hash_is_refused(db: Database) -> None:
    await db.keys.create(key(1))
    with pytest.raises(DuplicateKeyError):
        await db.keys.create(key(1, key_hash="f" * 64))
    with pytest.raises(DuplicateKeyError):
        await db.keys.create(key(2, key_hash=key(1).key_hash))
    with pytest.raises(ValueError, match="already"):  # DuplicateKeyError is a ValueError
        await db.keys.create(key(1))


async def test_incomplete_key_is_not_called_a_duplicate(db: Database) -> None:
    with pytest.raises(ValueError, match="incomplete") as info:
        await db.keys.create(key(1, name=None))
    assert not isinstance(info.value, DuplicateKeyError)
    await db.keys.create(key(2))
    with pytest.raises(ValueError, match="None") as info:
        await db.keys.update(key(2).id, name=None)
    assert not isinstance(info.value, DuplicateKeyError)
    await db.keys.create(key(3))
    with pytest.raises(DuplicateKeyError):
        await db.keys.update(key(3).id, key_hash=key(2).key_hash)


async def test_update_sets_fields_and_updated_at(db: Database) -> None:
    rec = key(1)
    await db.keys.create(rec)
    before = time.time()
    new = await db.keys.update(rec.id, name="renamed", enabled=False, models=["a*"], metadata={"x": 1})
    assert new is not None
    assert (new.name, new.enabled, new.models, new.metadata) == ("renamed", False, ["a*"], {"x": 1})
    assert new.created_at == rec.created_at
    assert new.updated_at >= before
    assert await db.keys.get(rec.id) == new
    revoked = await db.keys.update(rec.id, revoked_at=before)
    assert revoked is not None
    assert not revoked.is_active(time.time())


async def test_update_missing_key_and_bad_fields(db: Database) -> None:
    assert await db.keys.update("key_missing", name="x") is None
    await db.keys.create(key(1))
    with pytest.raises(TypeError, match="created_at"):
        await db.keys.update(key(1).id, created_at=0.0)
    with pytest.raises(TypeError, match="bogus"):
        await db.keys.update(key(1).id, bogus=1)


async def test_last_change(db: Database) -> None:
    assert await db.keys.last_change() == 0.0
    await db.keys.create(key(1))
    assert await db.keys.last_change() == key(1).updated_at
    # A key stamped in the future (a host whose clock runs ahead): an update elsewhere must still
    # move last_change forward, or workers polling it would miss the change.
    await db.keys.create(key(2, updated_at=time.time() + 3600))
    seen = await db.keys.last_change()
    updated = await db.keys.update(key(1).id, enabled=False)
    assert updated is not None
    assert updated.updated_at > seen
    assert await db.keys.last_change() == updated.updated_at


async def test_list_pages_in_created_order(db: Database) -> None:
    # Keys 3..5 share created_at: the id breaks the tie, and no page boundary loses one.
    recs = [key(i, created_at=T0 + min(i, 3)) for i in range(8)]
    for r in reversed(recs):
        await db.keys.create(r)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await db.keys.list(limit=3, cursor=cursor)
        pages += 1
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [r.id for r in sorted(recs, key=lambda r: (r.created_at, r.id))]


async def test_list_exclude_revoked(db: Database) -> None:
    for i in range(4):
        await db.keys.create(key(i, revoked_at=T0 if i % 2 else None))
    page, cursor = await db.keys.list(include_revoked=False)
    assert [r.id for r in page] == [key(0).id, key(2).id]
    assert cursor is None
    page, _ = await db.keys.list()
    assert len(page) == 4


async def test_list_limit_is_capped(db: Database) -> None:
    async with db.engine.begin() as conn:  # one statement, not 205 transactions
        await conn.execute(api_keys.insert(), [_to_row(key(i)) for i in range(205)])
    page, cursor = await db.keys.list(limit=10_000)
    assert len(page) == 200
    assert cursor is not None
    rest, cursor = await db.keys.list(limit=10_000, cursor=cursor)
    assert len(rest) == 5
    assert cursor is None


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "W10", "WyJhIiwiYiJd"])
async def test_bad_cursor(db: Database, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await db.keys.list(cursor=cursor)


async def test_log_prompts_is_stored_and_updated(db: Database) -> None:
    off, on = key(1), key(2, log_prompts=True)
    await db.keys.create(off)
    await db.keys.create(on)
    assert (await db.keys.get(off.id)).log_prompts is False  # type: ignore[union-attr]
    assert (await db.keys.get_by_hash(on.key_hash)).log_prompts is True  # type: ignore[union-attr]
    changed = await db.keys.update(off.id, log_prompts=True)
    assert changed is not None and changed.log_prompts is True
    assert await db.keys.get(off.id) == changed
