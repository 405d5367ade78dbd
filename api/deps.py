"""Dependencies shared by the routes: the database pool and settings. Authentication and the city rule are in
`api.access`.

Deadlines: a database link that goes silent (a partition, a hung server) raises no error, and a query on it would
wait forever, holding its request and its pool connection. Every lent connection therefore carries a deadline: the
statement timeout plus `DEADLINE_GRACE_S`, after which its socket is shut down, the blocked query fails with an
OperationalError (answered 503) and the pool replaces the connection. The server's own statement timeout fires
first whenever the server can still speak, so only a silent link ever reaches the deadline.
"""

from __future__ import annotations

import asyncio
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
from livinglab.storage import shutdown_connection

log = logging.getLogger(__name__)

#: How long past its statement timeout a query may wait before its connection is taken for dead.
DEADLINE_GRACE_S = 5.0
#: The armed deadline of each lent connection (see `extend_deadline`).
_deadlines: weakref.WeakKeyDictionary[AsyncConnection[Any], asyncio.TimerHandle] = weakref.WeakKeyDictionary()


def _cut(conn: AsyncConnection[Any], after_s: float) -> None:
    if shutdown_connection(conn):
        log.warning("no answer from the database within %.1f s; dropping the connection", after_s)


def arm_deadline(conn: AsyncConnection[Any], seconds: float) -> None:
    """Shut `conn` down if it is still lent `seconds` from now (replacing any deadline it had)."""
    disarm_deadline(conn)
    _deadlines[conn] = asyncio.get_running_loop().call_later(seconds, _cut, conn, seconds)


def disarm_deadline(conn: AsyncConnection[Any]) -> None:
    handle = _deadlines.pop(conn, None)
    if handle is not None:
        handle.cancel()


def extend_deadline(conn: AsyncConnection[Any], statement_timeout_s: float) -> None:
    """For a request that raises its statement timeout (deleting a long history): a deadline to match."""
    arm_deadline(conn, statement_timeout_s + DEADLINE_GRACE_S)


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

    def __init__(self, idle_s: float = 2.0, deadline_s: float = 10.0) -> None:
        self.idle_s = idle_s
        self.deadline_s = deadline_s
        self._last_used: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()

    def used(self, conn: AsyncConnection[Any]) -> None:
        self._last_used[conn] = time.monotonic()

    async def __call__(self, conn: AsyncConnection[Any]) -> None:
        if time.monotonic() - self._last_used.get(conn, 0.0) >= self.idle_s:
            arm_deadline(conn, self.deadline_s)
            try:
                await AsyncConnectionPool.check_connection(conn)
            finally:
                disarm_deadline(conn)


@asynccontextmanager
async def connection(
    pool: AsyncConnectionPool, timeout_s: float, idle_check: IdleCheck
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection in autocommit mode: reads run without a transaction to end (which would cost the pool
    a ROLLBACK round trip per request); writes open one with `conn.transaction()`. It carries a deadline while
    lent (see the module docstring)."""
    async with pool.connection(timeout=timeout_s) as conn:
        arm_deadline(conn, idle_check.deadline_s)
        try:
            if not conn.autocommit:
                await conn.set_autocommit(True)
            yield conn
        finally:
            disarm_deadline(conn)
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
