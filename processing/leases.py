"""The processor's second connection: it hears the ingester's NOTIFY and keeps the leases of the round in hand.

The processor computes on one connection, in one transaction per round, and cannot renew a lease there (a renewal
inside the round's transaction would be seen by nobody before it commits). So a `LeaseKeeper` thread, on a
connection of its own, LISTENs on `livinglab_dirty` (and wakes the computing thread), and every third of the lease
renews the lease of the windows the computing thread holds (`hold`). A lease can therefore be short: while its
owner lives, the owner renews it; when the owner dies, its windows move on as soon as the lease runs out.

The keeper renews only the round in hand, and only while the computing thread is in it, so a processor whose
computing connection broke stops renewing at once, and windows it claimed in an earlier life are never renewed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from livinglab.resilience import DatabasePolicy
from livinglab.storage import CHANNEL_DIRTY, listen_until_stopped
from processing import claims
from processing.claims import Claim

log = logging.getLogger(__name__)

#: The listening connection is checked with a query at least this often (a silent link fails the query).
_CHECK_S = 1.0


class LeaseKeeper:
    """Hears `livinglab_dirty` (`woken`) and renews the leases of the held claim; `run(stop)` in its own thread."""

    def __init__(
        self, conninfo: str, *, policy: DatabasePolicy, worker: str, lease_s: float, application_name: str
    ) -> None:
        self.conninfo = conninfo
        self.policy = policy
        self.worker = worker
        self.lease_s = lease_s
        self.application_name = application_name
        #: Set when the ingester announced new dirty windows (the computing thread clears it).
        self.woken = threading.Event()
        #: Leases renewed so far, and why the last renewal or check failed (None while all is well).
        self.renewed = 0
        self.last_error: str | None = None
        self._held: tuple[bool, Claim] | None = None

    @contextlib.contextmanager
    def hold(self, claim: Claim, *, rollups: bool) -> Iterator[None]:
        """Keep `claim`'s lease for the duration of the block (minutes, or hours and days with `rollups`)."""
        self._held = (rollups, claim)
        try:
            yield
        finally:
            self._held = None

    def run(self, stop: threading.Event) -> None:
        def failed(error: str) -> None:
            self.last_error = error

        listen_until_stopped(
            self.conninfo,
            policy=self.policy,
            channel=CHANNEL_DIRTY,
            application_name=self.application_name,
            stop=stop,
            serve=lambda conn: self._serve(conn, stop),
            failed=failed,
            what="lease keeper",
        )

    def _serve(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        self.last_error = None
        self.woken.set()  # notifications may have been missed while this connection was down
        renew_every_s = self.lease_s / 3
        renewed_at = checked_at = time.monotonic()
        while not stop.is_set():
            wait_s = max(0.0, min(renewed_at + renew_every_s, checked_at + _CHECK_S) - time.monotonic())
            for _ in conn.notifies(timeout=min(wait_s, 0.25), stop_after=1):
                self.woken.set()
            now = time.monotonic()
            if now - renewed_at >= renew_every_s:
                self._renew(conn)
                renewed_at = checked_at = time.monotonic()
            elif now - checked_at >= _CHECK_S:
                conn.execute("SELECT 1")
                checked_at = time.monotonic()

    def _renew(self, conn: psycopg.Connection[Any]) -> None:
        held = self._held
        if held is None:
            return
        rollups, claim = held
        self.renewed += claims.renew(conn, claim, rollups=rollups, worker=self.worker, lease_s=self.lease_s)
