"""Writing readings the way the ingester does: insert, then mark the touched minutes dirty (bumping `version`)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import psycopg

from livinglab.domain import QUANTITIES
from livinglab.storage.copy import encode_binary_copy
from tests.support.city_load import MARK_INSERTED_DIRTY

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS test_readings (
    sensor_key integer, quantity smallint, ts timestamptz, value float8, received_at timestamptz
) ON COMMIT DELETE ROWS
"""

# The ingester's statement (ingest/writer.py): new readings only, then their minutes marked or re-marked dirty.
_INSERT_AND_MARK = (
    """
WITH inserted AS (
    INSERT INTO readings (sensor_key, quantity, ts, value, received_at)
    SELECT DISTINCT ON (sensor_key, quantity, ts) sensor_key, quantity, ts, value, received_at
    FROM test_readings ORDER BY sensor_key, quantity, ts
    ON CONFLICT DO NOTHING
    RETURNING sensor_key, quantity, ts
)"""
    + MARK_INSERTED_DIRTY
)


def epoch_s(ts: datetime) -> float:
    return ts.astimezone(UTC).timestamp()


def write_readings(url: str, key: int, quantity: str, ts_s: npt.ArrayLike, values: npt.ArrayLike) -> None:
    """Insert readings of one sensor and quantity (times in seconds since the Unix epoch) and mark them dirty."""
    vals = np.atleast_1d(np.asarray(values, dtype=np.float64))
    ts_us = np.round(np.atleast_1d(np.asarray(ts_s, dtype=np.float64)) * 1e6).astype(np.int64)
    keys = np.full(vals.size, key, dtype=np.int32)
    codes = np.full(vals.size, QUANTITIES[quantity].code, dtype=np.int16)
    with psycopg.connect(url) as conn:
        conn.execute(_STAGE)
        with conn.cursor().copy(
            "COPY test_readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(
                encode_binary_copy(
                    [("int4", keys), ("int2", codes), ("timestamptz", ts_us), ("float8", vals), ("timestamptz", ts_us)]
                )
            )
        conn.execute(_INSERT_AND_MARK)
        conn.commit()
