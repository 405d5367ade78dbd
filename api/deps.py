"""Dependencies shared by the routes: the database pool and settings. Authentication and the city rule are in
`api.access`.

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
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.settings import ApiSettings
from livinglab.storage import extend_deadline as storage_extend_deadline

log = logging.getLogger(__name__)


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


_MOVED_TO_ACCESS = frozenset({"ReadAccess", "SensorsWriteAccess", "AdminAccess", "KeyCache"})


def __getattr__(name: str) -> Any:
    # Routes once declared `dependencies=[ReadAccess]`, which authenticates but hands the route nothing to filter
    # cities with. Say where the replacement is instead of a bare ImportError.
    if name in _MOVED_TO_ACCESS:
        raise ImportError(
            f"api.deps.{name} is gone: a route takes the caller as a parameter, `access: ReadAccessDep` (or "
            "WriteAccessDep, AdminAccessDep) from api.access, and filters cities with it (docs/api.md)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
