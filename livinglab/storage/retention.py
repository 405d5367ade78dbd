"""The retention job: drop rows older than their table's retention interval, in small batches.

On plain PostgreSQL it is the only thing that keeps the time-series tables bounded; on TimescaleDB the extension's
retention policies drop whole chunks of the hypertables (livinglab.storage.policies) and this job trims only the
plain tables. Either way it trims:

- `rejected` (by `received_at`) and `events` (by `created_at`; SSE clients catch up on at most that much);
- `notification_deliveries` that are delivered or failed (by `created_at`); a pending delivery stays however old it
  is, so no alarm notification is dropped before it is sent or gives up;
- `ingest_counters`, `ingest_latency`, `completeness_hourly` and `rejected_drops` (by `hour`);
- `dirty_windows` (and `dirty_rollups`, a day later) whose window is older than the readings' retention: their
  readings are gone, so computing them would produce nothing.

Each batch is its own short transaction (delete by `ctid` of at most `batch_rows` rows), so the job never holds
locks for long or bloats one transaction, and it can stop between batches. Several copies may run at once: a pass
takes an advisory lock and a copy that finds it taken skips the pass. Every table's pass is recorded in
`retention_runs`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from livinglab.resilience import Backoff
from livinglab.settings import CoreSettings
from livinglab.storage._db import connect
from livinglab.storage.migrate import check_schema, uses_timescaledb
from livinglab.storage.policies import HYPERTABLES, StoragePolicies

log = logging.getLogger(__name__)

_LOCK_ID = 0x6C6C7274  # "llrt": one retention pass at a time per database


class RetentionSettings(CoreSettings):
    """Settings of the retention job (`livinglab retention`); the intervals themselves are in `CoreSettings`."""

    retention_every_s: float = Field(default=3600.0, gt=0, description="How often the retention job runs a pass.")
    retention_batch_rows: int = Field(
        default=10_000, ge=1, description="Rows the retention job deletes per transaction."
    )


@dataclass(frozen=True, slots=True)
class Target:
    """One table the job trims: rows whose `column` is older than `interval` (with `settled_only`, only rows whose
    `status` is no longer `pending`)."""

    table: str
    column: str
    interval: str
    margin: str = "0 seconds"
    settled_only: bool = False


@dataclass(frozen=True, slots=True)
class TableResult:
    table: str
    cutoff: datetime
    rows_deleted: int
    duration_ms: float


def retention_targets(policies: StoragePolicies, *, timescaledb: bool) -> list[Target]:
    """What a pass trims, in order: queued work first (it refers to readings), then data, then bookkeeping."""
    targets: list[Target] = []
    if policies.readings is not None:
        targets.append(Target("dirty_windows", "window_start", policies.readings))
        # An hour or day to roll up is kept while any of its readings may still be (a day is the longest window).
        targets.append(Target("dirty_rollups", "window_start", policies.readings, margin="1 day"))
    if not timescaledb:  # TimescaleDB's retention policies drop these hypertables' chunks
        for table, column in HYPERTABLES.items():
            interval = policies.hypertable_retention(table)
            if interval is not None:
                targets.append(Target(table, column, interval))
    if policies.counters is not None:
        targets.append(Target("ingest_counters", "hour", policies.counters))
        targets.append(Target("ingest_latency", "hour", policies.counters))
        targets.append(Target("completeness_hourly", "hour", policies.counters))
        targets.append(Target("rejected_drops", "hour", policies.counters))
    if policies.rejected is not None:
        targets.append(Target("rejected", "received_at", policies.rejected))
    if policies.events is not None:
        targets.append(Target("events", "created_at", policies.events))
    if policies.deliveries is not None:
        targets.append(Target("notification_deliveries", "created_at", policies.deliveries, settled_only=True))
    return targets


def trim_table(
    conn: psycopg.Connection[Any],
    target: Target,
    *,
    batch_rows: int,
    stop: threading.Event | None = None,
) -> TableResult:
    """Delete `target`'s rows older than its interval, `batch_rows` per transaction; record the pass.

    The cutoff is fixed at the start, so rows that age past it while the pass runs wait for the next pass.
    """
    started = time.perf_counter()
    row = conn.execute("SELECT now() - %s::interval - %s::interval", (target.interval, target.margin)).fetchone()
    conn.commit()
    assert row is not None
    cutoff: datetime = row[0]
    delete = sql.SQL(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {column} < %s{settled} LIMIT %s))"
    ).format(
        table=sql.Identifier(target.table),
        column=sql.Identifier(target.column),
        settled=sql.SQL(" AND status <> 'pending'" if target.settled_only else ""),
    )
    deleted = 0
    while stop is None or not stop.is_set():
        with conn.transaction():
            n = conn.execute(delete, (cutoff, batch_rows)).rowcount
        deleted += n
        if n < batch_rows:
            break
    duration_ms = (time.perf_counter() - started) * 1000
    with conn.transaction():
        conn.execute(
            "INSERT INTO retention_runs (table_name, cutoff, rows_deleted, duration_ms) VALUES (%s, %s, %s, %s)",
            (target.table, cutoff, deleted, duration_ms),
        )
    return TableResult(target.table, cutoff, deleted, duration_ms)


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    # Targets name work tables of every role; a database at an older schema may lack some of them.
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    conn.commit()
    return bool(row and row[0])


def run_retention(
    conn: psycopg.Connection[Any],
    policies: StoragePolicies,
    *,
    batch_rows: int = 10_000,
    stop: threading.Event | None = None,
) -> list[TableResult] | None:
    """One pass over every target; None when another pass holds the lock. `conn` must not be in a transaction."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()
    conn.commit()
    if not row or not row[0]:
        log.info("another retention pass is running; skipping this one")
        return None
    try:
        timescaledb = uses_timescaledb(conn)
        conn.commit()
        results = []
        for target in retention_targets(policies, timescaledb=timescaledb):
            if stop is not None and stop.is_set():
                break
            if not _exists(conn, target.table):
                continue
            result = trim_table(conn, target, batch_rows=batch_rows, stop=stop)
            if result.rows_deleted:
                log.info(
                    "retention: deleted %d rows of %s older than %s in %.0f ms",
                    result.rows_deleted,
                    result.table,
                    result.cutoff.isoformat(),
                    result.duration_ms,
                )
            results.append(result)
        return results
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
        conn.commit()


class RetentionJob:
    """`livinglab retention`: a pass at start, then one every `retention_every_s`, until `stop()`."""

    def __init__(self, settings: RetentionSettings) -> None:
        self.settings = settings
        self.policies = StoragePolicies.from_settings(settings)
        self.policy = settings.database_policy()
        self._database_url = settings.require_database_url()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> list[TableResult] | None:
        with connect(self._database_url, policy=self.policy, application_name="livinglab-retention") as conn:
            check_schema(conn)
            conn.commit()
            return run_retention(conn, self.policies, batch_rows=self.settings.retention_batch_rows, stop=self._stop)

    def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while not self._stop.is_set():
            try:
                self.run_once()
                backoff.succeeded()
                wait = self.settings.retention_every_s
            except psycopg.OperationalError as exc:
                wait = backoff.failed()
                log.warning("database unavailable (%s); retrying in %.0f s", exc, wait)
            self._stop.wait(wait)
