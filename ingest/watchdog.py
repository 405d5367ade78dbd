"""Watchdogs for links that die silently: a TCP peer that stops answering without closing the connection.

A network partition (or a firewall dropping a connection's packets) leaves no error to read: writes still succeed
into the kernel's buffer, and a read simply never returns. TCP keepalive takes hours by default and does not fire
while unacknowledged data is queued. So each side the ingester talks to gets an application-level deadline:

- the broker: paho sends PINGREQ after `keepalive` seconds without traffic and gives up only one more `keepalive`
  after that (about 2x the keepalive when messages were flowing). `BrokerLink.check_alive` drops the connection
  after 1.5x the keepalive of silence from the broker, which always answers a PINGREQ well within that;
- the database: `cut_after` shuts down a connection's socket when a block of database work has not finished in
  time, so the blocked call fails at once with an OperationalError and the normal retry path (reconnect, back off,
  write the same batch again) takes over. The server also gets that timeout as `statement_timeout`, so a server
  that is merely slow (locks, a long COPY) cancels the statement itself and says so first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from livinglab.storage import connect, shutdown_connection

log = logging.getLogger(__name__)

#: How long after the server's own statement_timeout a silent database connection is taken for dead.
CUT_GRACE_S = 5.0


@contextlib.contextmanager
def cut_after(seconds: float, connection: Callable[[], psycopg.Connection[Any] | None], what: str) -> Iterator[Any]:
    """Run the block; if it is still running after `seconds`, shut down whatever connection `connection()` returns
    then. Yields an object whose `fired` tells whether the deadline passed."""
    state = _Deadline()

    def expire() -> None:
        state.fired = True
        if shutdown_connection(connection()):
            log.warning("%s: no answer from the database within %.1f s; dropping the connection", what, seconds)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()


class _Deadline:
    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired = False


def listen_until_stopped(
    conninfo: str,
    *,
    channel: str,
    application_name: str,
    stop: threading.Event,
    serve: Callable[[psycopg.Connection[Any]], None],
    failed: Callable[[str], None],
    what: str,
) -> None:
    """Connect, LISTEN on `channel` and run `serve(conn)` on the connection until `stop` is set. A database error
    ends the connection: `failed(description)` is called and the loop reconnects after a backoff (0.5 s, doubling
    to 10 s, back to 0.5 s once LISTEN works again)."""
    delay = 0.5
    while not stop.is_set():
        try:
            with connect(conninfo, application_name=application_name, autocommit=True) as conn:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = 0.5
                serve(conn)
        except psycopg.Error as exc:
            error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            failed(error)
            log.warning("%s: %s; retrying in %.1f s", what, error, delay)
        if stop.wait(delay):
            return
        delay = min(delay * 2, 10.0)
