"""Connections and pools, with the deadlines of `livinglab.resilience` on every wait for the server.

Every role opens its own pool (the API's is separate from the ingester's, so a slow dashboard cannot starve
ingestion). Pools check a connection before lending it, so a database restart costs one failed attempt, not a
pool of dead connections.

Connections opened here with a `DatabasePolicy` are `GuardedConnection`s (or `AsyncGuardedConnection`s): each wait
for the server (a query, a COPY, a COMMIT) marks the connection busy, and one watchdog thread per process shuts
down the socket of a connection busy for longer than the policy's `cut_after_s`. The blocked call then fails at
once; it raises `DatabaseTimeout`, and the connection is discarded like any broken one. Marking costs two attribute
writes under a lock per wait, so the API can afford it on every request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from livinglab.resilience import Backoff, DatabasePolicy, DatabaseTimeout

log = logging.getLogger(__name__)

#: NOTIFY channel: the ingester committed readings that made windows dirty (payload: number of windows).
CHANNEL_DIRTY = "livinglab_dirty"
#: NOTIFY channel: change events were committed (payload: the type of an event written; see `livinglab.events`).
CHANNEL_EVENTS = "livinglab_events"
#: NOTIFY channel: the sensor registry changed (payload: the sensor_id).
CHANNEL_REGISTRY = "livinglab_registry"
#: NOTIFY channel: the API asked for rejected messages to be replayed (payload: the `rejected.id`).
CHANNEL_REPLAY = "livinglab_replay"

#: Seconds a pool waits for a new connection to be established (libpq waits forever by default, and a server that
#: accepts TCP but never answers, behind a silent link, would hold the pool's connection attempts for good).
POOL_CONNECT_TIMEOUT_S = 10
#: How often the watchdog looks at the busy connections (the precision of every cut).
WATCHDOG_TICK_S = 0.1

RV = TypeVar("RV")
AnyConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]


def shutdown_connection(conn: AnyConnection | None) -> bool:
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


class _Watch:
    """One connection's deadline state, shared by its owner (marking waits) and the watchdog (cutting)."""

    __slots__ = ("busy_since", "cut_after_s", "fired", "lock", "policy", "what")

    def __init__(self, policy: DatabasePolicy, what: str) -> None:
        self.lock = threading.Lock()
        self.policy = policy
        self.cut_after_s = policy.cut_after_s
        self.what = what
        self.busy_since: float | None = None
        self.fired = False

    def begin(self) -> None:
        with self.lock:
            self.busy_since = time.monotonic()
            self.fired = False

    def end(self) -> bool:
        """Mark the wait over; True when the watchdog cut the connection during it."""
        with self.lock:
            self.busy_since = None
            return self.fired

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark the block as a wait for the server; a failure after a cut is raised as `DatabaseTimeout`."""
        self.begin()
        try:
            yield
        except psycopg.OperationalError as exc:
            if self.end():
                raise _timeout_error(self, exc) from exc
            raise
        finally:
            self.end()  # also when the wait was cancelled or interrupted: an idle connection must not be cut


class _Watchdog:
    """One daemon thread per process that cuts connections busy past their deadline."""

    def __init__(self) -> None:
        self._watched: weakref.WeakKeyDictionary[AnyConnection, _Watch] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, conn: AnyConnection, policy: DatabasePolicy, what: str) -> _Watch:
        watch = _Watch(policy, what)
        with self._lock:
            self._watched[conn] = watch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="livinglab-db-watchdog", daemon=True)
                self._thread.start()
        return watch

    def _run(self) -> None:
        while True:
            time.sleep(WATCHDOG_TICK_S)
            with self._lock:
                watched = list(self._watched.items())
            now = time.monotonic()
            for conn, watch in watched:
                with watch.lock:
                    since = watch.busy_since
                    if since is None or watch.fired or now - since < watch.cut_after_s:
                        continue
                    watch.fired = True
                    waited = now - since
                if shutdown_connection(conn):
                    log.warning(
                        "%s: no answer from the database for %.1f s; cutting the connection", watch.what, waited
                    )


_watchdog = _Watchdog()


def _timeout_error(watch: _Watch, exc: BaseException) -> DatabaseTimeout:
    error = DatabaseTimeout(f"no answer from the database within {watch.cut_after_s:.1f} s (the link is silent)")
    error.__cause__ = exc
    return error


class GuardedConnection(psycopg.Connection[Any]):
    """A connection whose waits for the server are cut after the policy's deadline (see the module docstring)."""

    _watch: _Watch | None = None

    def wait(self, gen: Generator[Any, Any, RV], *args: Any, **kwargs: Any) -> RV:
        watch = self._watch
        if watch is None or kwargs.get("timeout") is not None:  # a wait the caller bounded itself (notifies)
            return super().wait(gen, *args, **kwargs)
        with watch.waiting():
            return super().wait(gen, *args, **kwargs)


class AsyncGuardedConnection(psycopg.AsyncConnection[Any]):
    """The asyncio twin of `GuardedConnection`."""

    _watch: _Watch | None = None

    async def wait(self, gen: Generator[Any, Any, RV], *args: Any, **kwargs: Any) -> RV:
        watch = self._watch
        if watch is None or kwargs.get("timeout") is not None:
            return await super().wait(gen, *args, **kwargs)
        with watch.waiting():
            return await super().wait(gen, *args, **kwargs)


def guard(conn: GuardedConnection | AsyncGuardedConnection, policy: DatabasePolicy, what: str = "database") -> None:
    """Put `conn` under the watchdog with `policy`'s deadline (connections from this module already are); `what`
    names it in the log."""
    conn._watch = _watchdog.watch(conn, policy, what)


def extend_deadline(conn: AnyConnection, timeout_s: float | None) -> None:
    """Let `conn` wait up to `timeout_s` plus its policy's grace for the server (for work that raises its own
    `statement_timeout`, such as deleting a long history); None restores the policy's deadline."""
    watch: _Watch | None = getattr(conn, "_watch", None)
    if watch is not None:
        policy = watch.policy
        watch.cut_after_s = policy.cut_after_s if timeout_s is None else timeout_s + policy.grace_s


def _connection_kwargs(application_name: str, policy: DatabasePolicy | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"application_name": application_name, "connect_timeout": POOL_CONNECT_TIMEOUT_S}
    if policy is not None:
        kwargs.update(policy.connection_kwargs())
    return kwargs


def _guarded(
    conn: GuardedConnection | AsyncGuardedConnection, policy: DatabasePolicy | None, application_name: str
) -> None:
    if policy is not None:
        guard(conn, policy, application_name)


def connect(
    conninfo: str,
    *,
    policy: DatabasePolicy | None = None,
    application_name: str = "livinglab",
    autocommit: bool = False,
) -> GuardedConnection:
    """Open one connection. Roles pass their `DatabasePolicy`; without one (migrations, one-off commands) the
    connection waits as long as the work takes."""
    conn = GuardedConnection.connect(conninfo, autocommit=autocommit, **_connection_kwargs(application_name, policy))
    _guarded(conn, policy, application_name)
    return conn


async def connect_async(
    conninfo: str,
    *,
    policy: DatabasePolicy | None = None,
    application_name: str = "livinglab",
    autocommit: bool = False,
) -> AsyncGuardedConnection:
    """The asyncio version of `connect`."""
    conn = await AsyncGuardedConnection.connect(
        conninfo, autocommit=autocommit, **_connection_kwargs(application_name, policy)
    )
    _guarded(conn, policy, application_name)
    return conn


def create_pool(
    conninfo: str,
    *,
    name: str,
    policy: DatabasePolicy,
    min_size: int = 1,
    max_size: int = 4,
    open_wait_s: float | None = None,
) -> ConnectionPool[GuardedConnection]:
    """A blocking pool of guarded connections, health-checked before use."""

    def configure(conn: GuardedConnection) -> None:
        _guarded(conn, policy, f"livinglab-{name}")

    pool = ConnectionPool(
        conninfo,
        name=name,
        connection_class=GuardedConnection,
        min_size=min_size,
        max_size=max_size,
        kwargs=_connection_kwargs(f"livinglab-{name}", policy),
        configure=configure,
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
    policy: DatabasePolicy,
    min_size: int = 1,
    max_size: int = 8,
    check: Callable[[AsyncGuardedConnection], Any] | None = AsyncConnectionPool.check_connection,
) -> AsyncConnectionPool[AsyncGuardedConnection]:
    """An asyncio pool of guarded connections (for the API); open it with `await pool.open()`. `check` runs
    before each loan (default: a round trip to the server)."""

    async def configure(conn: AsyncGuardedConnection) -> None:
        _guarded(conn, policy, f"livinglab-{name}")

    return AsyncConnectionPool(
        conninfo,
        name=name,
        connection_class=AsyncGuardedConnection,
        min_size=min_size,
        max_size=max_size,
        kwargs=_connection_kwargs(f"livinglab-{name}", policy),
        configure=configure,
        check=check,
        open=False,
        reconnect_timeout=float("inf"),
    )


def listen_until_stopped(
    conninfo: str,
    *,
    policy: DatabasePolicy,
    channel: str,
    application_name: str,
    stop: threading.Event,
    serve: Callable[[GuardedConnection], None],
    failed: Callable[[str], None],
    what: str,
    backoff: Backoff | None = None,
) -> None:
    """Connect, LISTEN on `channel` and run `serve(conn)` on the connection until `stop` is set. A database error
    ends the connection: `failed(description)` is called and the loop reconnects after `backoff` (default 0.5 s,
    doubling to 10 s, back to 0.5 s once LISTEN works again).

    `serve` should wait for notifications in slices (`conn.notifies(timeout=...)`) and query the connection now and
    then: a query is what notices a silent link (its deadline cuts it), a wait for notifications never does.
    """
    backoff = backoff or Backoff(0.5, 10.0)
    while not stop.is_set():
        try:
            with connect(conninfo, policy=policy, application_name=application_name, autocommit=True) as conn:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                backoff.succeeded()
                serve(conn)
        except psycopg.Error as exc:
            error = describe_error(exc)
            failed(error)
            delay = backoff.failed()
            log.warning("%s: %s; retrying in %.1f s", what, error, delay)
            if stop.wait(delay):
                return
            continue
        stop.wait(backoff.failed())  # serve returned without an error: only on stop, or else not in a busy loop


def describe_error(exc: BaseException) -> str:
    """An exception in one short line, for logs and health reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
