"""The processor process: rounds of work, woken by NOTIFY `livinglab_dirty` with a polling fallback.

Minutes go first (they are what the ingester queues), but while minutes keep coming, due hours and days still get
a round every `rollup_interval_s`; the service-level clock is checked every `tally_interval_s`. When there is
nothing to do the processor sleeps until a NOTIFY, the next rollup's due time, or the poll interval, whichever is
first. Any number of processors can run against one database (see `processing.claims`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from livinglab.alarms.evaluator import AlarmEvaluator
from livinglab.resilience import Backoff, is_transient
from livinglab.storage import check_schema, connect, describe_error
from processing import aggregates, aqi, claims, ispu, traffic
from processing.leases import LeaseKeeper
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
    """Runs rounds whenever the ingester NOTIFYs, and every `poll_interval_s` regardless.

    Two connections: the computing one, and the `LeaseKeeper`'s, which hears NOTIFY and keeps the lease of the
    round in hand. Any database failure the processor can retry (`livinglab.resilience.is_transient`) rolls the
    round back; the processor reconnects after a backoff and first takes back what it still had claimed, so those
    windows are computed again at once instead of waiting out their lease. A restart under the same worker id does
    the same.
    """

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._policy = settings.database_policy()
        self._name = f"livinglab-{settings.worker_id}"
        self._stop = threading.Event()
        self.keeper = LeaseKeeper(
            self._database_url,
            policy=self._policy,
            worker=settings.worker_id,
            lease_s=settings.claim_lease_s,
            application_name=f"{self._name}-listen",
        )
        #: Alarm evaluation, in its own thread and connection, so a slow notification never delays a round (and a
        #: round never delays evaluation). Every processor runs one; they share one cursor (see its module).
        self.evaluator = (
            AlarmEvaluator(
                self._database_url,
                policy=self._policy,
                poll_s=settings.alarm_poll_s,
                silence_check_s=settings.silence_check_s,
                min_interval_s=settings.alarm_min_interval_s,
                application_name=f"{self._name}-alarms",
            )
            if settings.alarms
            else None
        )
        #: Set while the computing connection works.
        self.connected = threading.Event()
        #: Rounds that failed and were rolled back, why the last one did, windows computed, windows taken back.
        self.failures = 0
        self.last_error: str | None = None
        self.windows = 0
        self.taken_back = 0

    def stop(self) -> None:
        self._stop.set()
        self.keeper.woken.set()

    def run(self) -> None:
        warm_up()
        keeper = threading.Thread(
            target=self.keeper.run, args=(self._stop,), name=f"{self.settings.worker_id}-leases", daemon=True
        )
        keeper.start()
        evaluator = None
        if self.evaluator is not None:
            evaluator = threading.Thread(
                target=self.evaluator.run, args=(self._stop,), name=f"{self.settings.worker_id}-alarms", daemon=True
            )
            evaluator.start()
        backoff = Backoff(0.5, 10.0)
        try:
            while not self._stop.is_set():
                try:
                    self._run_connected(backoff)
                except psycopg.Error as exc:
                    if not is_transient(exc):
                        raise
                    self.connected.clear()
                    self.failures += 1
                    self.last_error = describe_error(exc)
                    delay = backoff.failed()
                    log.warning("round failed (%s); reconnecting in %.1f s", self.last_error, delay)
                    self._stop.wait(delay)
        finally:
            self._stop.set()
            keeper.join(timeout=self._policy.cut_after_s + 5)
            if evaluator is not None:
                evaluator.join(timeout=self._policy.cut_after_s + 5)
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
        with connect(self._database_url, policy=self._policy, application_name=self._name) as conn:
            check_schema(conn)
            conn.rollback()
            taken = claims.take_back(conn, worker=self.settings.worker_id)
            if taken:
                self.taken_back += taken
                log.info("took back %d windows still claimed by %s", taken, self.settings.worker_id)
            backoff.succeeded()
            self.last_error = None
            self.connected.set()
            log.info("processor %s ready", self.settings.worker_id)
            last_rollups = last_tally = 0.0
            while not self._stop.is_set():
                minutes = minute_round(conn, self.settings, self.keeper)
                rollups = 0
                now = time.monotonic()
                if not minutes or now - last_rollups >= self.settings.rollup_interval_s:
                    rollups = rollup_round(conn, self.settings, self.keeper)
                    last_rollups = now
                if now - last_tally >= self.settings.tally_interval_s:
                    tally_round(conn)
                    last_tally = now
                self.windows += minutes + rollups
                if minutes or rollups:
                    log.debug("processed %d minutes, %d hours/days", minutes, rollups)
                    continue
                self._wait_for_work(conn)

    def _wait_for_work(self, conn: psycopg.Connection[Any]) -> None:
        timeout = self.settings.poll_interval_s
        with conn.transaction():
            row = conn.execute(_NEXT_DUE).fetchone()
        if row is not None and row[0] is not None:
            timeout = min(timeout, max(float(row[0]), 0.05))
        if self.keeper.woken.wait(timeout):
            self.keeper.woken.clear()
