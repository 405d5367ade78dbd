"""Storage policies: how long each table keeps its rows and, on TimescaleDB, when chunks are compressed.

The intervals are settings (`LIVINGLAB_RETENTION_*`, `LIVINGLAB_COMPRESS_AFTER`), read once into a
`StoragePolicies`. Two mechanisms carry them out:

- on TimescaleDB, the extension's own background jobs: `apply_policies` (run by `livinglab migrate` and
  `livinglab up` after the migrations) reconciles one compression job per compressed hypertable and one retention
  job per hypertable with a retention interval, so a changed setting takes effect on the next migrate;
- everywhere, the retention job (`livinglab.storage.retention`): it drops whole tables' old rows on plain
  PostgreSQL and, on both, trims the plain tables that no TimescaleDB policy covers (rejected messages, change
  events, counters, queued work whose readings are gone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from livinglab.settings import CoreSettings
from livinglab.storage.migrate import uses_timescaledb

log = logging.getLogger(__name__)

#: Hypertables (on TimescaleDB) and their time column. Every one of them may carry a retention interval.
HYPERTABLES: dict[str, str] = {
    "readings": "ts",
    "agg_1m": "window_start",
    "agg_1h": "window_start",
    "agg_1d": "window_start",
}
#: Hypertables whose chunks are compressed (migration 0040 enables compression on them).
COMPRESSED: tuple[str, ...] = ("readings", "agg_1m")


@dataclass(frozen=True, slots=True)
class StoragePolicies:
    """Retention per table and the compression delay; None keeps rows forever (or never compresses)."""

    compress_after: str | None = "8 days"
    readings: str | None = "90 days"
    agg_1m: str | None = "365 days"
    agg_1h: str | None = None
    agg_1d: str | None = None
    counters: str | None = "365 days"
    rejected: str | None = "30 days"
    events: str | None = "7 days"
    deliveries: str | None = "30 days"

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> StoragePolicies:
        return cls(
            compress_after=settings.compress_after,
            readings=settings.retention_readings,
            agg_1m=settings.retention_agg_1m,
            agg_1h=settings.retention_agg_1h,
            agg_1d=settings.retention_agg_1d,
            counters=settings.retention_counters,
            rejected=settings.retention_rejected,
            events=settings.retention_events,
            deliveries=settings.retention_deliveries,
        )

    def hypertable_retention(self, table: str) -> str | None:
        """The retention interval of one of `HYPERTABLES`."""
        value: str | None = getattr(self, table)
        return value


@dataclass(frozen=True, slots=True)
class PolicyJob:
    """A TimescaleDB background job that carries out a policy."""

    job_id: int
    table: str
    kind: str  # "compression" or "retention"
    interval: str
    schedule_interval: str


_JOBS = """
SELECT job_id, hypertable_name, proc_name, config, schedule_interval::text
FROM timescaledb_information.jobs
WHERE proc_name IN ('policy_compression', 'policy_retention') AND hypertable_schema = current_schema()
ORDER BY hypertable_name, proc_name
"""
_CONFIG_KEY = {"policy_compression": "compress_after", "policy_retention": "drop_after"}


def policy_jobs(conn: psycopg.Connection[Any]) -> list[PolicyJob]:
    """The compression and retention jobs TimescaleDB runs for this schema (empty on plain PostgreSQL)."""
    if not uses_timescaledb(conn):
        return []
    jobs = []
    for job_id, table, proc, config, schedule in conn.execute(_JOBS).fetchall():
        kind = "compression" if proc == "policy_compression" else "retention"
        jobs.append(PolicyJob(int(job_id), str(table), kind, str(config.get(_CONFIG_KEY[proc])), str(schedule)))
    return jobs


def apply_policies(conn: psycopg.Connection[Any], policies: StoragePolicies) -> list[str]:
    """Make TimescaleDB's compression and retention jobs match `policies`; returns what changed.

    A no-op on plain PostgreSQL (the retention job covers it). Runs in one transaction of its own.
    """
    if not uses_timescaledb(conn):
        return []
    changes: list[str] = []
    with conn.transaction():
        existing = {(job.table, job.kind): job for job in policy_jobs(conn)}
        for table in HYPERTABLES:
            wanted_compress = policies.compress_after if table in COMPRESSED else None
            changes += _reconcile(conn, existing.get((table, "compression")), table, "compression", wanted_compress)
            changes += _reconcile(
                conn, existing.get((table, "retention")), table, "retention", policies.hypertable_retention(table)
            )
    for change in changes:
        log.info("storage policy: %s", change)
    return changes


def _same_interval(conn: psycopg.Connection[Any], a: str, b: str) -> bool:
    row = conn.execute("SELECT %s::interval = %s::interval", (a, b)).fetchone()
    return bool(row and row[0])


def _reconcile(
    conn: psycopg.Connection[Any], job: PolicyJob | None, table: str, kind: str, wanted: str | None
) -> list[str]:
    if job is not None and wanted is not None and _same_interval(conn, job.interval, wanted):
        return []
    changes = []
    if job is not None:
        conn.execute(f"SELECT remove_{kind}_policy(%s::regclass)", (table,))
        changes.append(f"removed {kind} of {table} after {job.interval}")
    if wanted is not None:
        if kind == "compression":
            conn.execute("SELECT add_compression_policy(%s::regclass, compress_after => %s::interval)", (table, wanted))
        else:
            conn.execute("SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)", (table, wanted))
        changes.append(f"{kind} of {table} after {wanted}")
    return changes


def run_policy_jobs(conn: psycopg.Connection[Any], kind: str | None = None) -> list[int]:
    """Run TimescaleDB's policy jobs now instead of on their schedule (operators and tests); returns the job ids.

    `conn` must be in autocommit mode: `run_job` is a procedure that commits.
    """
    ran = []
    for job in policy_jobs(conn):
        if kind is None or job.kind == kind:
            conn.execute("CALL run_job(%s)", (job.job_id,))
            ran.append(job.job_id)
    return ran
