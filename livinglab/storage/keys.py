"""API keys: created once, shown once, stored only as a SHA-256 hash.

Keys are 43 characters of URL-safe base64 (256 random bits) after a short prefix, so a fast hash is as safe as a
slow one here: there is nothing to guess.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

KEY_PREFIX = "ll_"


class Scope(enum.StrEnum):
    """API scopes; each includes the ones before it."""

    READ = "read"
    SENSORS_WRITE = "sensors:write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def includes(self, other: Scope) -> bool:
        return self.rank >= other.rank


_RANK = {Scope.READ: 0, Scope.SENSORS_WRITE: 1, Scope.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    scope: Scope
    name: str


def generate_key() -> str:
    """A new random key: `ll_` and 43 characters of [A-Za-z0-9_-]."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def create_key(conn: psycopg.Connection[Any], scope: Scope, *, name: str = "") -> str:
    """Store a new key's hash and return the key itself (the only time it is visible)."""
    key = generate_key()
    conn.execute(
        "INSERT INTO api_keys (key_hash, key_prefix, scope, name) VALUES (%s, %s, %s, %s)",
        (hash_key(key), key[:8], scope.value, name),
    )
    return key


def find_key(conn: psycopg.Connection[Any], key: str) -> ApiKey | None:
    """The live (not revoked) key matching `key`, if any."""
    row = conn.execute(
        "SELECT id, scope, name FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (hash_key(key),)
    ).fetchone()
    return ApiKey(row[0], Scope(row[1]), row[2]) if row else None


def revoke_keys_named(conn: psycopg.Connection[Any], name: str) -> int:
    """Revoke every live key with this name (used to rotate the local admin key of `livinglab up`)."""
    cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,))
    return cur.rowcount
