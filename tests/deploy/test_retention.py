"""The retention job on plain PostgreSQL: old rows go, in batches; recent rows, and other tables, stay."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from livinglab.settings import CoreSettings
from livinglab.storage.policies import StoragePolicies, apply_policies, policy_jobs
from livinglab.storage.retention import RetentionSettings, Target, retention_targets, run_retention, trim_table
from tests.support.notify import create_channel, queue_events

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
POLICIES = StoragePolicies(
    compress_after=None,
    readings="30 days",
    agg_1m="60 days",
    agg_1h="400 days",
    agg_1d=None,
    counters="90 days",
    rejected="10 days",
    events="2 days",
    deliveries="20 days",
)
# Per table: (time column, ages in days of the rows inserted, ages that survive POLICIES).
AGES: dict[str, tuple[str, list[int], list[int]]] = {
    "readings": ("ts", [1, 29, 31, 45], [1, 29]),
    "agg_1m": ("window_start", [1, 59, 61], [1, 59]),
    "agg_1h": ("window_start", [1, 399, 401], [1, 399]),
    "agg_1d": ("window_start", [1, 2000], [1, 2000]),
    "ingest_counters": ("hour", [1, 89, 91], [1, 89]),
    "ingest_latency": ("hour", [1, 91], [1]),
    "rejected": ("received_at", [1, 9, 11], [1, 9]),
    "events": ("created_at", [1, 3], [1]),
    "dirty_windows": ("window_start", [1, 31], [1]),
}


def _seed(conn: psycopg.Connection[Any]) -> None:
    """Rows of every trimmed table at the ages in AGES (several rows per age, to exercise batching)."""
    for table, (_column, ages, _kept) in AGES.items():
        for age in ages:
            at = NOW - timedelta(days=age)
            for quantity in range(1, 6):
                if table == "readings":
                    conn.execute(
                        "INSERT INTO readings VALUES (1, %s, %s, 1.0, %s)", (quantity, at, at + timedelta(seconds=5))
                    )
                elif table.startswith("agg_"):
                    conn.execute(
                        f"INSERT INTO {table} (sensor_key, quantity, window_start, count, sum) "
                        "VALUES (1, %s, %s, 1, 1.0)",
                        (quantity, at),
                    )
                elif table == "ingest_counters":
                    conn.execute("INSERT INTO ingest_counters (sensor_key, hour) VALUES (%s, %s)", (quantity, at))
                elif table == "ingest_latency":
                    conn.execute("INSERT INTO ingest_latency VALUES (1, %s, %s, 3)", (at, quantity))
                elif table == "rejected":
                    conn.execute(
                        "INSERT INTO rejected (received_at, topic, reason, detail, payload, payload_size) "
                        "VALUES (%s, 't', 'invalid_json', 'd', 'x', 1)",
                        (at,),
                    )
                elif table == "events":
                    conn.execute(
                        "INSERT INTO events (created_at, type, payload) VALUES (%s, 'aggregates', '{}')", (at,)
                    )
                else:
                    conn.execute(
                        "INSERT INTO dirty_windows (sensor_key, quantity, window_start) VALUES (1, %s, %s)",
                        (quantity, at),
                    )
    conn.commit()


def _ages(conn: psycopg.Connection[Any], table: str, column: str) -> list[int]:
    rows = conn.execute(
        f"SELECT DISTINCT round(extract(epoch FROM %s - {column}) / 86400)::int FROM {table} ORDER BY 1", (NOW,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_a_pass_deletes_exactly_the_rows_past_their_interval(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        _seed(conn)
        results = run_retention(conn, POLICIES, batch_rows=3)
        assert results is not None
        deleted = {r.table: r.rows_deleted for r in results}
        for table, (column, ages, kept) in AGES.items():
            assert _ages(conn, table, column) == kept, table
            if table in deleted:
                assert deleted[table] == 5 * (len(ages) - len(kept)), table
        assert "agg_1d" not in deleted  # no interval: kept forever, not even scanned
        logged = dict(conn.execute("SELECT table_name, rows_deleted FROM retention_runs").fetchall())
        assert logged == deleted
        again = run_retention(conn, POLICIES, batch_rows=3)
        assert again is not None
        assert all(r.rows_deleted == 0 for r in again)


def test_settled_notification_deliveries_go_and_pending_ones_stay(fresh_database_url: str) -> None:
    ages_and_statuses = [(age, status) for age in (1, 19, 21, 45) for status in ("pending", "delivered", "failed")]
    with psycopg.connect(fresh_database_url) as conn:
        channel = create_channel(conn, "webhook", {"url": "http://127.0.0.1:9/hook", "secret": "s"})
    ids = queue_events(fresh_database_url, [channel], len(ages_and_statuses))
    with psycopg.connect(fresh_database_url) as conn:
        for delivery_id, (age, status) in zip(ids, ages_and_statuses, strict=True):
            conn.execute(
                "UPDATE notification_deliveries SET status = %s, created_at = %s WHERE delivery_id = %s",
                (status, NOW - timedelta(days=age), delivery_id),
            )
        conn.commit()
        alarms_before = conn.execute("SELECT count(*) FROM alarms").fetchone()
        results = run_retention(conn, POLICIES, batch_rows=1)
        assert results is not None
        deleted = {r.table: r.rows_deleted for r in results}
        assert deleted["notification_deliveries"] == 4  # delivered and failed, 21 and 45 days old
        left = conn.execute(
            "SELECT status, round(extract(epoch FROM %s - created_at) / 86400)::int FROM notification_deliveries"
            " ORDER BY 1, 2",
            (NOW,),
        ).fetchall()
        assert left == [
            ("delivered", 1), ("delivered", 19), ("failed", 1), ("failed", 19),
            ("pending", 1), ("pending", 19), ("pending", 21), ("pending", 45),
        ]  # fmt: skip
        # The alarms and their channel are not the job's to remove.
        assert conn.execute("SELECT count(*) FROM alarms").fetchone() == alarms_before


def test_sensor_data_survives_when_retention_is_off(fresh_database_url: str) -> None:
    keep_all = StoragePolicies(
        compress_after=None, readings=None, agg_1m=None, counters=None, rejected=None, events=None, deliveries=None
    )
    assert retention_targets(keep_all, timescaledb=False) == []
    with psycopg.connect(fresh_database_url) as conn:
        _seed(conn)
        assert run_retention(conn, keep_all) == []
        assert _ages(conn, "readings", "ts") == [1, 29, 31, 45]


def test_timescaledb_leaves_hypertables_to_its_policies() -> None:
    tables = {t.table for t in retention_targets(POLICIES, timescaledb=True)}
    assert tables == {
        "dirty_windows",
        "dirty_rollups",
        "ingest_counters",
        "ingest_latency",
        "completeness_hourly",
        "rejected_drops",
        "rejected",
        "events",
        "notification_deliveries",
    }
    tables = {t.table for t in retention_targets(POLICIES, timescaledb=False)}
    assert {"readings", "agg_1m", "agg_1h"} <= tables


def test_a_second_pass_skips_while_one_holds_the_lock(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as holder, psycopg.connect(fresh_database_url) as other:
        holder.execute("SELECT pg_advisory_lock(%s)", (0x6C6C7274,))
        assert run_retention(other, POLICIES) is None
        holder.execute("SELECT pg_advisory_unlock(%s)", (0x6C6C7274,))
        assert run_retention(other, POLICIES) is not None


def test_a_stopped_pass_ends_between_batches(fresh_database_url: str) -> None:
    stop = threading.Event()
    stop.set()
    with psycopg.connect(fresh_database_url) as conn:
        _seed(conn)
        result = trim_table(conn, Target("readings", "ts", "30 days"), batch_rows=1, stop=stop)
        assert result.rows_deleted == 0
        assert _ages(conn, "readings", "ts") == [1, 29, 31, 45]


def test_policies_are_a_no_op_without_timescaledb(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        assert apply_policies(conn, POLICIES) == []
        assert policy_jobs(conn) == []


def test_interval_settings_are_checked() -> None:
    settings = CoreSettings(retention_readings="off", retention_events=" 36  hours ", compress_after="1 day 12 hours")
    assert settings.retention_readings is None
    assert settings.retention_events == "36 hours"
    assert StoragePolicies.from_settings(settings).compress_after == "1 day 12 hours"
    assert StoragePolicies.from_settings(CoreSettings(retention_deliveries="off")).deliveries is None
    assert StoragePolicies.from_settings(CoreSettings(retention_deliveries="3 days")).deliveries == "3 days"
    for bad in ("90", "ninety days", "1 day; DROP TABLE readings", "-1 days", "1 day 2 days"):
        with pytest.raises(ValidationError):
            CoreSettings(retention_readings=bad)
    with pytest.raises(ValidationError):
        CoreSettings(chunk_interval="off")
    assert RetentionSettings(retention_batch_rows=5).retention_batch_rows == 5


def test_retention_command_runs_one_pass(fresh_database_url: str, tmp_path: Any) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        _seed(conn)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LIVINGLAB_DATABASE_URL": fresh_database_url,
        "LIVINGLAB_RETENTION_READINGS": "30 days",
        "LIVINGLAB_RETENTION_EVENTS": "off",
    }
    result = subprocess.run(
        [sys.executable, "-m", "livinglab", "retention", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["readings"].startswith("deleted 10 rows older than ")
    assert "events" not in lines
    with psycopg.connect(fresh_database_url) as conn:
        assert _ages(conn, "readings", "ts") == [1, 29]
        assert _ages(conn, "events", "created_at") == [1, 3]
