"""Helpers of the deployment tests: SenML packs of readings, and what two databases computed, compared."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg

#: Work the processors have yet to do: 1-minute windows and the hours and days to roll up.
QUEUED_WORK = "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups)"
#: Processor settings that compute the current hour and day at once instead of after a delay, so a test can wait
#: for an empty queue.
NO_ROLLUP_DELAY = {"hour_rollup_delay_s": 0.0, "day_rollup_delay_s": 0.0, "rollup_interval_s": 0.2}

#: The aggregate tables and the columns that must match between two runs (`computed_at` differs by nature).
AGGREGATE_COLUMNS = "sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95, completeness"


def senml_pack(sensor_id: str, readings: Sequence[tuple[str, int, float]]) -> bytes:
    """A SenML pack of (quantity, unix seconds, value) readings of one sensor."""
    base = readings[0][1]
    records: list[dict[str, Any]] = [{"bn": f"urn:dev:livinglab:{sensor_id}:", "bt": base}]
    records += [{"n": q, "t": ts - base, "v": v} for q, ts, v in readings]
    return json.dumps(records).encode()


def wait_settled(url: str, readings: int, *, timeout_s: float = 240.0) -> None:
    """Wait until `readings` rows are stored and the processors have no queued work left."""
    query = f"SELECT (SELECT count(*) FROM readings), ({QUEUED_WORK})"
    deadline = time.monotonic() + timeout_s
    stored = dirty = -1
    while time.monotonic() < deadline:
        stored, dirty = table_rows(url, query)[0]
        if stored >= readings and dirty == 0:
            break
        time.sleep(0.2)
    rejected = table_rows(url, "SELECT reason, detail FROM rejected LIMIT 5")
    assert (stored, dirty) == (readings, 0), (
        f"expected {readings} readings and no queued work, found {stored} and {dirty}; rejected: {rejected}"
    )


def _comparable(value: Any) -> Any:
    # A window's values may reach the kernel in another order (storage order differs between runs and between
    # plain and compressed chunks), which moves a float sum in its last bits, nothing more.
    return round(value, 9) if isinstance(value, float) else value


def table_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(_comparable(v) for v in r) for r in conn.execute(query).fetchall()]


def stored_results(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the pipeline computed, in a comparable form: readings, rejections, every aggregate table and the
    hourly air indices (the service-level tallies run on a clock of their own and are left out)."""
    results = {
        "readings": table_rows(url, "SELECT sensor_key, quantity, ts, value FROM readings ORDER BY 1, 2, 3"),
        "rejected": table_rows(url, "SELECT sensor_id, reason, count(*) FROM rejected GROUP BY 1, 2 ORDER BY 1, 2"),
    }
    for table in ("agg_1m", "agg_1h", "agg_1d"):
        results[table] = table_rows(url, f"SELECT {AGGREGATE_COLUMNS} FROM {table} ORDER BY 1, 2, 3")
    results["ispu_hourly"] = table_rows(
        url, "SELECT sensor_key, window_end, ispu, critical_parameter, hours_valid FROM ispu_hourly ORDER BY 1, 2"
    )
    results["aqi_hourly"] = table_rows(
        url, "SELECT sensor_key, hour, aqi, dominant_pollutant FROM aqi_hourly ORDER BY 1, 2"
    )
    return results
