"""The processor end to end: readings in PostgreSQL -> kernels -> aggregates back in PostgreSQL, beside the rate of
only reading those rows through the processor's own read path.

A scratch database gets `sensors` air stations reporting PM2.5 once a second for `seconds` seconds, loaded by
binary COPY with every minute queued as dirty (as the ingester leaves them). After an untimed pass that brings the
rows into PostgreSQL's cache, three passes, timed separately:
1. read only: the processor's read query (one row of arrays per batch of windows) over every queued minute, in
   the processor's batch size, without computing or writing anything;
2. minutes: `minute_round` until the queue is empty: claim, read, kernels, upsert `agg_1m`, queue hours and days,
   change events, release;
3. hours and days: `rollup_round` until empty: exact hourly and daily aggregates from the raw readings again, then
   the ISPU and AQI labels they affect, per-sensor completeness and service levels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from livinglab.domain import QUANTITIES
from livinglab.launch import create_migrated_database, drop_database, unique_name
from livinglab.storage.copy import encode_binary_copy
from processing import ProcessorSettings
from processing._pgio import adapt_numpy, fetch_arrays
from processing.claims import Claim
from processing.rounds import minute_round, rollup_round
from processing.windows import READ_WINDOWS

_SENSORS = """
INSERT INTO sensors (sensor_id, city, district, kind, name, lat, lon, interval_s)
SELECT 'aq-' || lpad(i::text, 4, '0'), 'jakarta', 'd' || (i %% 10), 'air', 'aq-' || i, -6.2, 106.8, 1
FROM generate_series(0, %s - 1) i
"""

_DIRTY = """
INSERT INTO dirty_windows (sensor_key, quantity, window_start)
SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM readings ORDER BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class EndToEnd:
    readings: int
    windows: int
    read_s: float
    minutes_s: float
    rollups_s: float
    rollup_windows: int


def _load(url: str, sensors: int, seconds: int) -> tuple[int, int]:
    rng = np.random.default_rng(11)
    start_s = (int(time.time()) // 3600 - 6) * 3600 - seconds  # ends hours ago: every hour is complete
    with psycopg.connect(url) as conn:
        conn.execute(_SENSORS, (sensors,))
        keys = np.array([r[0] for r in conn.execute("SELECT sensor_key FROM sensors ORDER BY 1")], dtype=np.int32)
        ts_us = (start_s + np.arange(seconds, dtype=np.int64)) * 1_000_000
        chunk = max(1, 2_000_000 // seconds)
        for first in range(0, sensors, chunk):
            part = keys[first : first + chunk]
            n = part.size * seconds
            with conn.cursor().copy(
                "COPY readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(
                    encode_binary_copy(
                        [
                            ("int4", np.repeat(part, seconds)),
                            ("int2", np.full(n, QUANTITIES["pm25"].code, dtype=np.int16)),
                            ("timestamptz", np.tile(ts_us, part.size)),
                            ("float8", np.round(rng.gamma(4.0, 10.0, n), 1)),
                            ("timestamptz", np.tile(ts_us, part.size)),
                        ]
                    )
                )
        windows = conn.execute(_DIRTY).rowcount
        conn.execute("ANALYZE")
        conn.commit()
    return sensors * seconds, windows


def _read_only(url: str, batch: int) -> tuple[float, int]:
    """Read every queued window's readings through the processor's query, `batch` windows at a time."""
    with psycopg.connect(url) as conn:
        adapt_numpy(conn)
        key, quantity, start_us = fetch_arrays(
            conn,
            "SELECT array_agg(sensor_key ORDER BY window_start), array_agg(quantity ORDER BY window_start),"
            " array_agg(window_start ORDER BY window_start) FROM dirty_windows",
        )
        conn.rollback()
        windows = Claim(
            key.astype(np.int32),
            quantity.astype(np.int16),
            np.full(key.size, 60, dtype=np.int32),
            start_us,
            np.ones(key.size, dtype=np.int64),
        )
        started = time.perf_counter()
        total = 0
        for first in range(0, len(windows), batch):
            with conn.transaction():
                _, _, values = fetch_arrays(
                    conn, READ_WINDOWS, windows.take(np.arange(first, min(first + batch, len(windows)))).params()
                )
            total += values.size
        return time.perf_counter() - started, total


def _drain(url: str, settings: ProcessorSettings, step: Any) -> tuple[float, int]:
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        done = 0
        while n := step(conn, settings):
            done += n
        return time.perf_counter() - started, done


def run_end_to_end(server_url: str, *, sensors: int, seconds: int) -> EndToEnd:
    name = unique_name("bench_aggregate")
    url = create_migrated_database(server_url, name)
    try:
        readings, windows = _load(url, sensors, seconds)
        settings = ProcessorSettings(database_url=url, hour_rollup_delay_s=0, day_rollup_delay_s=0)
        _read_only(url, settings.claim_batch)  # untimed: brings the rows into the cache for every timed pass
        read_s, read_rows = _read_only(url, settings.claim_batch)
        if read_rows != readings:
            raise AssertionError(f"read {read_rows} readings, expected {readings}")
        minutes_s, done = _drain(url, settings, minute_round)
        if done != windows:
            raise AssertionError(f"computed {done} minutes, expected {windows}")
        rollups_s, rollup_windows = _drain(url, settings, rollup_round)
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT sum(count) FROM agg_1m").fetchone()
        if stored is None or stored[0] != readings:
            raise AssertionError("agg_1m does not count every reading")
        return EndToEnd(readings, windows, read_s, minutes_s, rollups_s, rollup_windows)
    finally:
        drop_database(server_url, name)
