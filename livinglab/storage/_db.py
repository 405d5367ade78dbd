"""Connections and pools.

Every role opens its own pool (the API's is separate from the ingester's, so a slow dashboard cannot starve
ingestion). Pools check a connection before lending it, so a database restart costs one failed attempt, not a
pool of dead connections.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

#: NOTIFY channel: the ingester committed readings that made windows dirty (payload: number of windows).
CHANNEL_DIRTY = "livinglab_dirty"
#: NOTIFY channel: the processor stored new aggregates or indices (payload: the `events.id` written).
CHANNEL_EVENTS = "livinglab_events"
#: NOTIFY channel: the sensor registry changed (payload: the sensor_id).
CHANNEL_REGISTRY = "livinglab_registry"
#: NOTIFY channel: the API asked for rejected messages to be replayed (payload: the `rejected.id`).
CHANNEL_REPLAY = "livinglab_replay"


#: Seconds a pool waits for a new connection to be established (libpq waits forever by default, and a server that
#: accepts TCP but never answers, behind a silent link, would hold the pool's connection attempts for good).
POOL_CONNECT_TIMEOUT_S = 10


def shutdown_connection(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None) -> bool:
    """Shut down the socket under a libpq connection, so a call blocked on it fails at once with an
    OperationalError (a link that went silent: a partition, a hung peer). Safe from any thread; True if there was a
    socket to shut down."""
    if conn is None or conn.closed:
        return False
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return False
    # shutdown() acts on the socket itself, which a duplicate descriptor shares; closing the duplicate leaves
    # libpq's own descriptor for libpq to close.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
        return True
    return False


def _options(application_name: str, statement_timeout_ms: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"application_name": application_name}
    if statement_timeout_ms is not None:
        kwargs["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    return kwargs


def connect(
    conninfo: str,
    *,
    application_name: str = "livinglab",
    autocommit: bool = False,
    statement_timeout_ms: int | None = None,
    connect_timeout_s: int = 10,
) -> psycopg.Connection[Any]:
    """Open one connection (for migrations, CLI commands and LISTEN)."""
    return psycopg.connect(
        conninfo,
        autocommit=autocommit,
        connect_timeout=connect_timeout_s,
        **_options(application_name, statement_timeout_ms),
    )


def create_pool(
    conninfo: str,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 4,
    statement_timeout_ms: int | None = None,
    open_wait_s: float | None = None,
) -> ConnectionPool:
    """A blocking pool whose connections are health-checked before use."""
    pool = ConnectionPool(
        conninfo,
        name=name,
        min_size=min_size,
        max_size=max_size,
        kwargs={**_options(f"livinglab-{name}", statement_timeout_ms), "connect_timeout": POOL_CONNECT_TIMEOUT_S},
        check=ConnectionPool.check_connection,
        open=False,
        reconnect_timeout=float("inf"),
    )
    pool.open(wait=open_wait_s is not None, timeout=open_wait_s or 30.0)
    return pool


def create_async_pool(
    conninfo: str,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 8,
    statement_timeout_ms: int | None = None,
    check: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = AsyncConnectionPool.check_connection,
) -> AsyncConnectionPool:
    """An asyncio pool (for the API); open it with `await pool.open()`. `check` runs before each loan (default:
    a round trip to the server)."""
    return AsyncConnectionPool(
        conninfo,
        name=name,
        min_size=min_size,
        max_size=max_size,
        kwargs={**_options(f"livinglab-{name}", statement_timeout_ms), "connect_timeout": POOL_CONNECT_TIMEOUT_S},
        check=check,
        open=False,
        reconnect_timeout=float("inf"),
    )
