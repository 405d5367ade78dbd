"""The processor process: rounds of work, woken by NOTIFY `livinglab_dirty` with a polling fallback.

Minutes go first (they are what the ingester queues), but while minutes keep coming, due hours and days still get
a round every `rollup_interval_s`; the service-level clock is checked every `tally_interval_s`. When there is
nothing to do the processor sleeps until a NOTIFY, the next rollup's due time, or the poll interval, whichever is
first. Any number of processors can run against one database (see `processing.claims`).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

import psycopg

from livinglab.resilience import Backoff
from livinglab.storage import CHANNEL_DIRTY, check_schema, connect
from processing import aggregates, aqi, ispu, traffic
from processing.rounds import minute_round, rollup_round, tally_round
from processing.settings import ProcessorSettings

log = logging.getLogger(__name__)

_NEXT_DUE = """
SELECT extract(epoch FROM min(due_at) - now()) FROM dirty_rollups
WHERE claimed_until IS NULL OR claimed_until < now()
"""


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, so the first batch is not slow."""
    aggregates.warm_up()
    ispu.warm_up()
    aqi.warm_up()
    traffic.warm_up()


def process_once(conn: psycopg.Connection[Any], settings: ProcessorSettings) -> int:
    """One round of each kind (minutes, due hours and days, the service-level clock). Returns the work done."""
    done = minute_round(conn, settings)
    done += rollup_round(conn, settings)
    done += tally_round(conn)
    return done


def process_until_idle(conn: psycopg.Connection[Any], settings: ProcessorSettings) -> int:
    """Run rounds until no minute and no due rollup is left (for tests, benchmarks and backfills)."""
    total = 0
    while done := process_once(conn, settings):
        total += done
    return total


class Processor:
    """Runs rounds whenever the ingester NOTIFYs, and every `poll_interval_s` regardless."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._policy = settings.database_policy()
        self._name = f"livinglab-{settings.worker_id}"
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        warm_up()
        backoff = Backoff(0.5, 10.0)
        while not self._stop.is_set():
            try:
                self._run_connected(backoff)
            except psycopg.OperationalError as exc:
                delay = backoff.failed()
                log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
        self._finish_deferred()

    def _finish_deferred(self) -> None:
        """On stop, compute the hours and days still waiting out their delay, so nothing stays stale while no
        processor runs (bounded by `drain_timeout_s`; what is left stays queued for the next processor)."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        try:
            with connect(self._database_url, policy=self._policy, application_name=self._name) as conn:
                while time.monotonic() < deadline and rollup_round(conn, self.settings, due_only=False):
                    pass
        except psycopg.OperationalError as exc:
            log.warning("deferred hours and days left queued (%s)", exc)

    def _run_connected(self, backoff: Backoff) -> None:
        policy, name = self._policy, self._name
        with (
            connect(self._database_url, policy=policy, application_name=name) as conn,
            connect(self._database_url, policy=policy, application_name=f"{name}-listen", autocommit=True) as listener,
        ):
            check_schema(conn)
            conn.rollback()
            listener.execute(f"LISTEN {CHANNEL_DIRTY}")
            backoff.succeeded()
            log.info("processor %s ready", self.settings.worker_id)
            last_rollups = last_tally = 0.0
            while not self._stop.is_set():
                minutes = minute_round(conn, self.settings)
                rollups = 0
                now = time.monotonic()
                if not minutes or now - last_rollups >= self.settings.rollup_interval_s:
                    rollups = rollup_round(conn, self.settings)
                    last_rollups = now
                if now - last_tally >= self.settings.tally_interval_s:
                    tally_round(conn)
                    last_tally = now
                if minutes or rollups:
                    log.debug("processed %d minutes, %d hours/days", minutes, rollups)
                    continue
                self._wait_for_work(conn, listener)

    def _wait_for_work(self, conn: psycopg.Connection[Any], listener: psycopg.Connection[Any]) -> None:
        timeout = self.settings.poll_interval_s
        with conn.transaction():
            row = conn.execute(_NEXT_DUE).fetchone()
        if row is not None and row[0] is not None:
            timeout = min(timeout, max(float(row[0]), 0.05))
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select([listener.fileno()], [], [], min(remaining, 0.5))
            if ready:
                notified = False
                for _ in listener.notifies(timeout=0, stop_after=100):
                    notified = True
                if notified:
                    return
