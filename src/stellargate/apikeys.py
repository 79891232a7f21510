"""API key format, generation and hashing.

A key is ``sg-`` + 40 random base62 characters + a 6-character base62 CRC-32 of them, so a
mistyped or invented key is refused without touching the database. Only the SHA-256 of the whole
key and a short display prefix are ever stored.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
PREFIX = "sg-"
BODY_LEN = 40
CHECK_LEN = 6
KEY_LEN = len(PREFIX) + BODY_LEN + CHECK_LEN
DISPLAY_LEN = len(PREFIX) + 8


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _b62(zlib.crc32(body.encode("ascii")), CHECK_LEN)


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return PREFIX + body + _checksum(body)


def well_formed(key: str) -> bool:
    if len(key) != KEY_LEN or not key.startswith(PREFIX):
        return False
    body = key[len(PREFIX) : len(PREFIX) + BODY_LEN]
    if any(c not in _INDEX for c in key[len(PREFIX) :]):
        return False
    return key[-CHECK_LEN:] == _checksum(body)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_LEN]


def new_key_id() -> str:
    return "key_" + secrets.token_hex(12)
