"""The processor: claim dirty windows, compute aggregates with the kernels, store them.

Claims are short transactions (`FOR UPDATE SKIP LOCKED`, then a lease), so any number of processors share the
work and the ingester never waits on a long computation. A claimed window is deleted from the queue only if its
version is unchanged; a window re-dirtied meanwhile is released and computed again.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

import numpy as np
import psycopg

from livinglab.storage import CHANNEL_DIRTY, check_schema, connect
from livinglab.storage.copy import encode_binary_copy
from processing.aggregates import group_stats, warm_up
from processing.settings import ProcessorSettings

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE dirty_windows d
SET claimed_until = now() + make_interval(secs => %(lease)s), claimed_by = %(worker)s
FROM (
    SELECT sensor_key, quantity, window_start FROM dirty_windows
    WHERE claimed_until IS NULL OR claimed_until < now()
    ORDER BY window_start
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) c
WHERE d.sensor_key = c.sensor_key AND d.quantity = c.quantity AND d.window_start = c.window_start
RETURNING d.sensor_key, d.quantity, d.window_start, d.version
"""

_READ = """
SELECT w.i, r.value
FROM unnest(%s::int4[], %s::int2[], %s::timestamptz[]) WITH ORDINALITY AS w(sensor_key, quantity, window_start, i)
JOIN readings r ON r.sensor_key = w.sensor_key AND r.quantity = w.quantity
    AND r.ts >= w.window_start AND r.ts < w.window_start + interval '1 minute'
ORDER BY w.i
"""

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS agg_staging (
    sensor_key integer, quantity smallint, window_start timestamptz, count bigint, sum float8, mean float8,
    min float8, max float8, p50 float8, p95 float8
) ON COMMIT DELETE ROWS
"""

_UPSERT_1M = """
INSERT INTO agg_1m AS a (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95, completeness)
SELECT s.sensor_key, s.quantity, s.window_start, s.count, s.sum, s.mean, s.min, s.max, s.p50, s.p95,
       least(1.0, s.count / (60.0 / sn.interval_s))
FROM agg_staging s JOIN sensors sn USING (sensor_key)
ORDER BY 1, 2, 3
ON CONFLICT (sensor_key, quantity, window_start) DO UPDATE SET
    count = excluded.count, sum = excluded.sum, mean = excluded.mean, min = excluded.min, max = excluded.max,
    p50 = excluded.p50, p95 = excluded.p95, completeness = excluded.completeness, computed_at = now()
"""

_RELEASE = """
WITH claimed AS (
    SELECT * FROM unnest(%s::int4[], %s::int2[], %s::timestamptz[], %s::int8[])
        AS c(sensor_key, quantity, window_start, version)
), done AS (
    DELETE FROM dirty_windows d USING claimed c
    WHERE d.sensor_key = c.sensor_key AND d.quantity = c.quantity AND d.window_start = c.window_start
      AND d.version = c.version
    RETURNING 1
)
UPDATE dirty_windows d SET claimed_until = NULL, claimed_by = NULL
FROM claimed c
WHERE d.sensor_key = c.sensor_key AND d.quantity = c.quantity AND d.window_start = c.window_start
  AND d.version <> c.version
"""


def process_once(conn: psycopg.Connection[Any], settings: ProcessorSettings) -> int:
    """Claim one round of dirty windows and compute their 1-minute aggregates. Returns windows processed."""
    with conn.transaction():
        claimed = conn.execute(
            _CLAIM,
            {"lease": settings.claim_lease_s, "worker": settings.worker_id, "limit": settings.claim_batch},
        ).fetchall()
    if not claimed:
        return 0
    keys = [c[0] for c in claimed]
    quantities = [c[1] for c in claimed]
    starts = [c[2] for c in claimed]
    versions = [c[3] for c in claimed]
    with conn.transaction():
        rows = conn.execute(_READ, (keys, quantities, starts)).fetchall()
        if rows:
            group = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            stats = group_stats(group, values)
            index = group[stats.starts] - 1  # ordinality is 1-based
            start_us = np.array([int(s.timestamp() * 1_000_000) for s in starts], dtype=np.int64)
            conn.execute(_STAGE)
            with conn.cursor().copy(
                "COPY agg_staging (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(
                    encode_binary_copy(
                        [
                            ("int4", np.asarray(keys, dtype=np.int32)[index]),
                            ("int2", np.asarray(quantities, dtype=np.int16)[index]),
                            ("timestamptz", start_us[index]),
                            ("int8", stats.count),
                            ("float8", stats.sum),
                            ("float8", stats.mean),
                            ("float8", stats.min),
                            ("float8", stats.max),
                            ("float8", stats.p50),
                            ("float8", stats.p95),
                        ]
                    )
                )
            conn.execute(_UPSERT_1M)
        conn.execute(_RELEASE, (keys, quantities, starts, versions))
    return len(claimed)


class Processor:
    """Runs `process_once` whenever the ingester NOTIFYs, and every `poll_interval_s` regardless."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        warm_up()
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._run_connected()
                delay = 0.5
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _run_connected(self) -> None:
        name = f"livinglab-{self.settings.worker_id}"
        with (
            connect(self._database_url, application_name=name) as conn,
            connect(self._database_url, application_name=f"{name}-listen", autocommit=True) as listener,
        ):
            check_schema(conn)
            conn.rollback()
            listener.execute(f"LISTEN {CHANNEL_DIRTY}")
            log.info("processor %s ready", self.settings.worker_id)
            while not self._stop.is_set():
                done = process_once(conn, self.settings)
                if done:
                    log.debug("processed %d windows", done)
                    continue
                self._wait_for_work(listener)

    def _wait_for_work(self, listener: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + self.settings.poll_interval_s
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
