"""`Idempotency.guard`, the one implementation every POST uses, on a real SQLite store: the 409
while the first request runs (held open deterministically), 422, replay, release on failure, and
records sealed at rest (no secret, no Idempotency-Key value, no body in clear)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
import sqlalchemy as sa

from stellargate.errors import GatewayError, InvalidRequest, NotFound
from stellargate.pipeline.idempotency import Idempotency, RecordKeys
from stellargate.settings import IdempotencySettings
from stellargate.storage.db import Database
from stellargate.storage.tables import idempotency_records
from stellargate.web import Reply, Request, Result, json_reply

SECRET = "sg-the-secret-shown-once-0123456789"
TOKEN = "adm-credential-of-the-caller"


def request(body: bytes, idem: str | None = "idem-1", path: str = "/admin/v1/keys") -> Request:
    headers = [(b"content-type", b"application/json")]
    if idem is not None:
        headers.append((b"idempotency-key", idem.encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    req = Request(scope, receive)
    req.body = body
    return req


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.connect(f"sqlite:///{tmp_path}/idem.db")
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def idem(db: Database) -> Idempotency:
    return Idempotency(db.idempotency, IdempotencySettings())


class Handler:
    """Creates a 'key' per call; can be held open to keep the first request running."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()
        self.proceed.set()

    async def __call__(self) -> Result:
        self.calls += 1
        self.entered.set()
        await self.proceed.wait()
        return json_reply({"id": f"key_{self.calls}", "key": SECRET}, status=201)


async def test_a_repeat_while_the_first_runs_is_a_409_then_replays(idem: Idempotency) -> None:
    handler = Handler()
    handler.proceed.clear()
    body = orjson.dumps({"name": "a"})
    first = asyncio.create_task(idem.guard("admin", TOKEN, request(body), handler))
    await asyncio.wait_for(handler.entered.wait(), 5)  # claimed: the claim precedes the call
    with pytest.raises(InvalidRequest) as conflict:
        await idem.guard("admin", TOKEN, request(body), handler)
    assert conflict.value.http_status == 409 and conflict.value.code == "idempotency_request_in_progress"
    handler.proceed.set()
    original = await first
    assert isinstance(original, Reply) and original.status == 201
    replay = await idem.guard("admin", TOKEN, request(body), handler)
    assert isinstance(replay, Reply)
    assert (replay.status, replay.body, replay.content_type) == (201, original.body, original.content_type)
    assert (b"idempotent-replayed", b"true") in replay.headers
    assert handler.calls == 1


async def test_another_body_is_a_422_and_no_header_always_runs(idem: Idempotency) -> None:
    handler = Handler()
    await idem.guard("admin", TOKEN, request(b'{"name": "a"}'), handler)
    with pytest.raises(InvalidRequest) as reused:
        await idem.guard("admin", TOKEN, request(b'{"name": "b"}'), handler)
    assert reused.value.http_status == 422 and reused.value.code == "idempotency_key_reused"
    # The path is part of the request: the same key on another endpoint is another body.
    with pytest.raises(InvalidRequest):
        await idem.guard("admin", TOKEN, request(b'{"name": "a"}', path="/admin/v1/webhooks"), handler)
    await idem.guard("admin", TOKEN, request(b'{"name": "a"}', idem=None), handler)
    await idem.guard("admin", TOKEN, request(b'{"name": "a"}', idem=None), handler)
    assert handler.calls == 3


async def test_a_failure_releases_the_key(idem: Idempotency) -> None:
    calls = 0

    async def failing() -> Result:
        nonlocal calls
        calls += 1
        raise NotFound("no such key")

    for _ in range(2):
        with pytest.raises(NotFound):
            for _ in range(100):  # the release is written in the background, just after
                try:
                    await idem.guard("admin", TOKEN, request(b"{}"), failing)
                except InvalidRequest:
                    await asyncio.sleep(0.01)
    assert calls == 2


async def test_records_are_sealed_at_rest(idem: Idempotency, db: Database) -> None:
    handler = Handler()
    await idem.guard("admin", TOKEN, request(b'{"name": "a"}', idem="my-guessable-key"), handler)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(idempotency_records))).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["key_id"] == "admin" and row["state"] == "done" and row["status"] == 201
    stored = b"|".join(str(v).encode() if not isinstance(v, bytes) else v for v in row.values())
    for clear in (SECRET, "my-guessable-key", '"name"', "key_1"):
        assert clear.encode() not in stored, clear
    assert row["headers"] == []  # sealed with the body
    # Only the caller's credential opens it: another credential, same key id, finds no record.
    keys = RecordKeys.derive(TOKEN, "admin", "my-guessable-key")
    assert row["idem_key"] == keys.lookup
    other = await idem.guard(
        "admin", "another-credential", request(b'{"name": "a"}', "my-guessable-key"), handler
    )
    assert isinstance(other, Reply) and handler.calls == 2


async def test_an_altered_record_is_refused_not_run_again(idem: Idempotency, db: Database) -> None:
    handler = Handler()
    await idem.guard("admin", TOKEN, request(b"{}"), handler)
    async with db.engine.begin() as conn:
        await conn.execute(sa.update(idempotency_records).values(status=200))
    with pytest.raises(GatewayError) as refused:
        await idem.guard("admin", TOKEN, request(b"{}"), handler)
    assert refused.value.http_status == 500
    assert handler.calls == 1
