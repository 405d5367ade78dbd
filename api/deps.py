"""Dependencies shared by the routes: the database pool, settings and authentication.

Authentication: `Authorization: Bearer <key>`. Keys are looked up by their SHA-256 hash and remembered for
`key_cache_s` seconds, so a busy dashboard does not cost a key lookup per request; a revoked key stops working
within that time.

Deadlines: the pool's connections carry the API's database policy (`livinglab.resilience`): the statement timeout
on the server, and a cut of any wait for the server that lasts the statement timeout plus the grace, so a silent
link (a partition, a hung server) fails the query with an OperationalError (answered 503) instead of holding its
request and its pool connection, and the pool replaces the connection.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.problems import ProblemError
from api.settings import ApiSettings
from livinglab.storage import extend_deadline as storage_extend_deadline
from livinglab.storage.keys import ApiKey, Scope, hash_key

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An API key from `livinglab keys create`.")

#: Keys remembered at most (oldest entries go first when full).
_KEY_CACHE_SIZE = 4096


def extend_deadline(conn: AsyncConnection[Any], statement_timeout_s: float) -> None:
    """For a request that raises its statement timeout (deleting a long history): a deadline to match, until the
    connection goes back to the pool."""
    storage_extend_deadline(conn, statement_timeout_s)


# Dependencies are coroutines even where they do not await: FastAPI runs plain functions in a thread pool, which
# costs a thread hop per dependency per request.


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


class IdleCheck:
    """A pool `check` that tests a connection with a round trip only when it sat unused for `idle_s` seconds.

    A busy API lends each connection many times a second; testing it every time would add a round trip to every
    request. A connection idle long enough to have been cut (a database restart, a proxy timeout) is tested first,
    so those cost no failed request; one cut while busy fails a single request with 503 and is replaced.
    """

    def __init__(self, idle_s: float = 2.0) -> None:
        self.idle_s = idle_s
        self._last_used: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()

    def used(self, conn: AsyncConnection[Any]) -> None:
        self._last_used[conn] = time.monotonic()

    async def __call__(self, conn: AsyncConnection[Any]) -> None:
        if time.monotonic() - self._last_used.get(conn, 0.0) >= self.idle_s:
            await AsyncConnectionPool.check_connection(conn)


@asynccontextmanager
async def connection(
    pool: AsyncConnectionPool, timeout_s: float, idle_check: IdleCheck
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection in autocommit mode: reads run without a transaction to end (which would cost the pool
    a ROLLBACK round trip per request); writes open one with `conn.transaction()`. Waits at most `timeout_s` for a
    free connection (PoolTimeout, answered 503)."""
    async with pool.connection(timeout=timeout_s) as conn:
        try:
            if not conn.autocommit:
                await conn.set_autocommit(True)
            yield conn
        finally:
            storage_extend_deadline(conn, None)
            idle_check.used(conn)


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection for one request (see `connection`)."""
    state = request.app.state
    async with connection(state.pool, state.settings.pool_timeout_s, state.idle_check) as conn:
        yield conn


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ConnDep = Annotated[AsyncConnection[Any], Depends(get_conn)]


class KeyCache:
    """key hash -> (ApiKey or None for an unknown key, expiry on the monotonic clock)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[ApiKey | None, float]] = {}

    def get(self, key_hash: bytes) -> tuple[bool, ApiKey | None]:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, key_hash: bytes, key: ApiKey | None) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= _KEY_CACHE_SIZE:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key_hash] = (key, time.monotonic() + self.ttl_s)


async def _lookup_key(request: Request, token: str) -> ApiKey | None:
    cache: KeyCache = request.app.state.key_cache
    key_hash = hash_key(token)
    hit, key = cache.get(key_hash)
    if hit:
        return key
    state = request.app.state
    async with connection(state.pool, state.settings.pool_timeout_s, state.idle_check) as conn:
        cur = await conn.execute(
            "SELECT id, scope, name FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (key_hash,)
        )
        row = await cur.fetchone()
    key = ApiKey(row[0], Scope(row[1]), row[2]) if row else None
    cache.put(key_hash, key)
    return key


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, needed: Scope
) -> ApiKey | None:
    settings: ApiSettings = request.app.state.settings
    if credentials is None:
        if needed is Scope.READ and settings.public_read:
            return None
        raise ProblemError(401, "an API key is required (Authorization: Bearer <key>)")
    key = await _lookup_key(request, credentials.credentials)
    if key is None:
        raise ProblemError(401, "the API key is not valid")
    if not key.scope.includes(needed):
        raise ProblemError(403, f"this key's scope {key.scope.value!r} does not include {needed.value!r}")
    return key


def require(scope: Scope) -> Any:
    """A dependency that admits requests whose key includes `scope`."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey | None:
        return await _authenticate(request, credentials, scope)

    return Depends(dependency)


ReadAccess = require(Scope.READ)
SensorsWriteAccess = require(Scope.SENSORS_WRITE)
AdminAccess = require(Scope.ADMIN)
