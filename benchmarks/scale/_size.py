"""How aggregation time and query latency grow with the number of stored readings.

The readings table grows by backfilling older days (binary COPY) while the most recent hour stays the same, so each
step does the same work on a bigger table: the processors aggregate the recent hour's windows, and the queries read a
fixed slice (one series for the last hour; every series for the last hour; one series for a random hour of the
loaded span).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.scale._load import SERIES_QUANTITIES, copy_readings, register_sensors
from benchmarks.scale._roles import process_drain
from livinglab.domain import QUANTITIES
from livinglab.storage import uses_timescaledb

SENSORS = 200
INTERVAL_S = 10
ROWS_PER_MINUTE = SENSORS * len(SERIES_QUANTITIES) * 60 // INTERVAL_S
RECENT_MINUTES = 60
AGGREGATION_TIMEOUT_S = 300.0

QUERIES = {
    "one series, 1 h": "SELECT ts, value FROM readings WHERE sensor_key = %(key)s AND quantity = %(q)s"
    " AND ts >= %(end)s - interval '1 hour' AND ts < %(end)s ORDER BY ts",
    "all series, last 1 h": "SELECT quantity, count(*), avg(value) FROM readings"
    " WHERE ts >= %(end)s - interval '1 hour' AND ts < %(end)s GROUP BY quantity",
    "one series, random 1 h": "SELECT ts, value FROM readings WHERE sensor_key = %(key)s AND quantity = %(q)s"
    " AND ts >= %(old)s AND ts < %(old)s + interval '1 hour' ORDER BY ts",
    "API: 1m aggregates, 1 h": "SELECT quantity, window_start, count, mean, min, max, p50, p95 FROM agg_1m"
    " WHERE sensor_key = %(key)s AND window_start >= %(end)s - interval '1 hour' ORDER BY 1, 2",
}


@dataclass(frozen=True, slots=True)
class SizePoint:
    readings: int
    table_bytes: int
    load_s: float
    windows: int
    aggregate_s: float | None
    #: The same with the processor of the compared checkout (`grow(compare_tree=...)`), else None.
    compared_s: float | None
    query_ms: dict[str, tuple[float, float]]  # name -> (p50, p95)


def _latencies(conn: psycopg.Connection[Any], query: str, params: list[dict[str, Any]]) -> tuple[float, float]:
    times = []
    for p in params:
        started = time.perf_counter()
        conn.execute(query, p).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def _table_bytes(conn: psycopg.Connection[Any]) -> int:
    if uses_timescaledb(conn):
        row = conn.execute("SELECT hypertable_size('readings')").fetchone()
    else:
        row = conn.execute("SELECT pg_total_relation_size('readings')").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _compress_old_chunks(conn: psycopg.Connection[Any], end: datetime) -> None:
    """On TimescaleDB, compress what a compression policy would have compressed by now (chunks older than a day)."""
    conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('readings', older_than => %s) c",
        (end - timedelta(days=1),),
    )


def grow(
    url: str, sizes: list[int], log_dir: Path, *, queries_per_point: int = 60, compare_tree: Path | None = None
) -> Iterator[SizePoint]:
    """Load up to each size in turn and measure, yielding each point as soon as it is measured.

    `url` is a migrated, empty database. With `compare_tree` (another checkout), the recent hour is aggregated by
    its processor as well, before this checkout's, on the same tables. Aggregation that does not finish within
    `AGGREGATION_TIMEOUT_S` is reported as such (aggregate_s is None) and the next size is still measured.
    """
    register_sensors(url, SENSORS, interval_s=INTERVAL_S)
    end_s = int(time.time()) // 3600 * 3600
    end = datetime.fromtimestamp(end_s, UTC)
    rng = random.Random(11)
    codes = [QUANTITIES[q].code for q in SERIES_QUANTITIES]
    loaded_minutes = 0
    with psycopg.connect(url, autocommit=True) as conn:
        timescaledb = uses_timescaledb(conn)
        for size in sizes:
            minutes = max(RECENT_MINUTES, size // ROWS_PER_MINUTE)
            started = time.perf_counter()
            if minutes > loaded_minutes:
                # Backfill the minutes before what is loaded, so the recent hour stays the same.
                copy_readings(
                    conn,
                    SENSORS,
                    end_s=end_s - loaded_minutes * 60,
                    minutes=minutes - loaded_minutes,
                    interval_s=INTERVAL_S,
                )
                loaded_minutes = minutes
            if timescaledb:
                _compress_old_chunks(conn, end)
            conn.execute("VACUUM ANALYZE readings")
            load_s = time.perf_counter() - started
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            stored = int(row[0]) if row else 0
            windows = SENSORS * len(SERIES_QUANTITIES) * RECENT_MINUTES
            compared_s = _aggregate_recent_hour(url, end, log_dir, compare_tree) if compare_tree else None
            aggregate_s = _aggregate_recent_hour(url, end, log_dir)
            oldest = end - timedelta(minutes=loaded_minutes)
            params = [
                {
                    "key": rng.randint(1, SENSORS),
                    "q": rng.choice(codes),
                    "end": end,
                    "old": oldest + (end - oldest - timedelta(hours=1)) * rng.random(),
                }
                for _ in range(queries_per_point)
            ]
            query_ms = {name: _latencies(conn, query, params) for name, query in QUERIES.items()}
            yield SizePoint(stored, _table_bytes(conn), load_s, windows, aggregate_s, compared_s, query_ms)


def _aggregate_recent_hour(url: str, end: datetime, log_dir: Path, source_tree: Path | None = None) -> float | None:
    """Seconds one processor takes for the recent hour, its minutes and its hours: the median of three runs (this
    machine is shared, and one run can land on someone else's burst), or None when a run does not finish in time.
    `source_tree`: with the processor of that checkout."""
    since = end - timedelta(minutes=RECENT_MINUTES)
    try:
        runs = [
            process_drain(
                url,
                processes=1,
                since=since,
                log_dir=log_dir,
                timeout_s=AGGREGATION_TIMEOUT_S,
                rollups=True,
                source_tree=source_tree,
            )
            for _ in range(3)
        ]
    except TimeoutError:
        return None
    return sorted(run.seconds for run in runs)[1]
