"""The counter store's Redis client: RESP encoding to the byte, and a round trip through the
real server on this machine."""

from __future__ import annotations

import uuid

import pytest

from stellargate.counters.redis import _num
from stellargate.counters.resp import RespClient, encode

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_commands_are_encoded_as_resp_arrays_of_bulk_strings() -> None:
    # Lengths count bytes, not characters ("é" is two).
    assert encode(("SET", "k:é", b"\x00v")) == b"*3\r\n$3\r\nSET\r\n$4\r\nk:\xc3\xa9\r\n$2\r\n\x00v\r\n"
    assert encode(("PING",)) == b"*1\r\n$4\r\nPING\r\n"


def test_numbers_go_as_integers_when_whole_and_exactly_otherwise() -> None:
    assert [_num(v) for v in (5, 5.0, 1e18, 0.25, 34508.84344339371, -3)] == [
        "5", "5", "1000000000000000000", "0.25", "34508.84344339371", "-3"
    ]  # fmt: skip


@pytest.mark.asyncio(loop_scope="session")
async def test_a_round_trip_through_the_real_server() -> None:
    client = RespClient(REDIS_URL)
    key = f"sg:test:{uuid.uuid4().hex}"
    try:
        assert await client.call("SET", key, "välue", "PX", "10000") == b"OK"
        assert await client.call("GET", key) == "välue".encode()
        assert await client.call("EVAL", "return tonumber(ARGV[1]) * 2", "0", _num(2.5)) == 5
    finally:
        await client.call("DEL", key)
        await client.close()
