"""API keys: created once, shown once, stored only as a SHA-256 hash, limited to a scope and optionally to cities.

Keys are 43 characters of URL-safe base64 (256 random bits) after a short prefix, so a fast hash is as safe as a
slow one here: there is nothing to guess.

A key limited to cities sees and changes only those cities (CONTRACT.md section 8); a key without cities sees every
city. The column holds the cities sorted and without repeats; an empty array means every city.

The SQL of the lookups is exported (`SELECT_LIVE_KEY`, `INSERT_KEY`, ...) so that the API, which holds async
connections, runs exactly the statements the blocking helpers below run.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from livinglab.domain import IDENTIFIER_RE

KEY_PREFIX = "ll_"
#: Characters of a key kept in clear, to recognise it in a list (the prefix and five random characters).
SHOWN_PREFIX_LENGTH = 8
#: Most cities one key may be limited to (the database checks the same bound).
MAX_KEY_CITIES = 64


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
    """A live key as authentication sees it. `cities` empty: every city."""

    id: int
    scope: Scope
    name: str
    cities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as listed to operators (never the key itself: only its first characters)."""

    key_id: int
    prefix: str
    scope: Scope
    cities: tuple[str, ...]
    name: str
    created_at: datetime
    created_by: int | None


def generate_key() -> str:
    """A new random key: `ll_` and 43 characters of [A-Za-z0-9_-]."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def normalize_cities(cities: Iterable[str]) -> tuple[str, ...]:
    """Cities as stored: sorted, without repeats. Raises ValueError for a name off the topic grammar."""
    unique = sorted(set(cities))
    bad = [c for c in unique if not IDENTIFIER_RE.match(c)]
    if bad:
        raise ValueError(f"city {bad[0]!r} does not match [a-z0-9][a-z0-9_-]{{0,63}}")
    if len(unique) > MAX_KEY_CITIES:
        raise ValueError(f"a key may be limited to at most {MAX_KEY_CITIES} cities")
    return tuple(unique)


#: The live key with a hash: (id, scope, name, cities).
SELECT_LIVE_KEY = "SELECT id, scope, name, cities FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"
#: The columns of a KeyRecord, in order.
KEY_COLUMNS = "id, key_prefix, scope, cities, name, created_at, created_by"
#: Store a key: (key_hash, key_prefix, scope, name, cities, created_by); returns the record's columns.
INSERT_KEY = (
    "INSERT INTO api_keys (key_hash, key_prefix, scope, name, cities, created_by) VALUES (%s, %s, %s, %s, %s, %s)"
    f" RETURNING {KEY_COLUMNS}"
)
#: Live keys after an id, in id order: (after_id, limit).
SELECT_LIVE_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND id > %s ORDER BY id LIMIT %s"
#: Revoke one live key: (key_id); returns its hash (to forget it in caches) and cities.
REVOKE_KEY = "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING key_hash, cities"
#: A live key's cities: (key_id).
SELECT_KEY_CITIES = "SELECT cities FROM api_keys WHERE id = %s AND revoked_at IS NULL"


def api_key(row: Sequence[Any]) -> ApiKey:
    """An ApiKey from a row of `SELECT_LIVE_KEY`."""
    return ApiKey(int(row[0]), Scope(row[1]), row[2], frozenset(row[3]))


def key_record(row: Sequence[Any]) -> KeyRecord:
    """A KeyRecord from a row of `INSERT_KEY` or `SELECT_LIVE_KEYS`."""
    return KeyRecord(int(row[0]), row[1], Scope(row[2]), tuple(row[3]), row[4], row[5], row[6])


def new_key_values(
    scope: Scope, *, name: str = "", cities: Iterable[str] = (), created_by: int | None = None
) -> tuple[str, tuple[Any, ...]]:
    """A new random key and the parameters of `INSERT_KEY` that store it."""
    key = generate_key()
    return key, (
        hash_key(key),
        key[:SHOWN_PREFIX_LENGTH],
        scope.value,
        name,
        list(normalize_cities(cities)),
        created_by,
    )


def issue_key(
    conn: psycopg.Connection[Any],
    scope: Scope,
    *,
    name: str = "",
    cities: Iterable[str] = (),
    created_by: int | None = None,
) -> tuple[KeyRecord, str]:
    """Store a new key; returns its record and the key itself (the only time it is visible)."""
    key, values = new_key_values(scope, name=name, cities=cities, created_by=created_by)
    row = conn.execute(INSERT_KEY, values).fetchone()
    assert row is not None
    return key_record(row), key


def create_key(conn: psycopg.Connection[Any], scope: Scope, *, name: str = "", cities: Iterable[str] = ()) -> str:
    """Store a new key and return the key itself (the only time it is visible)."""
    return issue_key(conn, scope, name=name, cities=cities)[1]


def find_key(conn: psycopg.Connection[Any], key: str) -> ApiKey | None:
    """The live (not revoked) key matching `key`, if any."""
    row = conn.execute(SELECT_LIVE_KEY, (hash_key(key),)).fetchone()
    return api_key(row) if row else None


def list_keys(conn: psycopg.Connection[Any]) -> list[KeyRecord]:
    """Every live key, oldest first."""
    rows = conn.execute(SELECT_LIVE_KEYS, (0, 2**31 - 1)).fetchall()
    return [key_record(r) for r in rows]


def revoke_key(conn: psycopg.Connection[Any], key_id: int) -> bool:
    """Revoke a live key; False when there is no live key with this id."""
    return conn.execute(REVOKE_KEY, (key_id,)).fetchone() is not None


def revoke_keys_named(conn: psycopg.Connection[Any], name: str) -> int:
    """Revoke every live key with this name (used to rotate the local admin key of `livinglab up`)."""
    cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,))
    return cur.rowcount
