"""Writing a batch: one transaction, binary COPY into staging, then readings, dirty windows, counters, rejections.

Only after COMMIT may the batch's messages be acknowledged to the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from livinglab.storage import CHANNEL_DIRTY
from livinglab.storage.copy import encode_binary_copy

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    received_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

_INSERT_AND_MARK = """
WITH inserted AS (
    INSERT INTO readings (sensor_key, quantity, ts, value, received_at)
    SELECT DISTINCT ON (sensor_key, quantity, ts) sensor_key, quantity, ts, value, received_at
    FROM ingest_staging
    ORDER BY sensor_key, quantity, ts
    ON CONFLICT DO NOTHING
    RETURNING sensor_key, quantity, ts
), windows AS (
    SELECT sensor_key, quantity, date_trunc('minute', ts) AS window_start, count(*) AS n
    FROM inserted GROUP BY 1, 2, 3
), marked AS (
    INSERT INTO dirty_windows (sensor_key, quantity, window_start)
    SELECT sensor_key, quantity, window_start FROM windows ORDER BY 1, 2, 3
    ON CONFLICT (sensor_key, quantity, window_start)
    DO UPDATE SET version = dirty_windows.version + 1, marked_at = now()
    RETURNING 1
), counted AS (
    INSERT INTO ingest_counters AS c (sensor_key, hour, accepted, last_seen)
    SELECT sensor_key, date_trunc('hour', max(received_at)), count(*), max(received_at)
    FROM inserted JOIN ingest_staging USING (sensor_key, quantity, ts)
    GROUP BY sensor_key ORDER BY sensor_key
    ON CONFLICT (sensor_key, hour) DO UPDATE SET
        accepted = c.accepted + excluded.accepted,
        last_seen = greatest(c.last_seen, excluded.last_seen)
    RETURNING 1
)
SELECT (SELECT coalesce(sum(n), 0) FROM windows), (SELECT count(*) FROM marked), (SELECT count(*) FROM counted)
"""


@dataclass(slots=True)
class RejectedMessage:
    received_at_s: float
    topic: str
    reason: str
    detail: str
    payload: bytes
    payload_size: int
    city: str | None = None
    kind: str | None = None
    sensor_id: str | None = None
    sensor_key: int | None = None


@dataclass(slots=True)
class Batch:
    """Readings accepted by the decoder, column-wise, plus the rejections of the same messages."""

    sensor_key: list[npt.NDArray[np.int32]] = field(default_factory=list)
    quantity: list[npt.NDArray[np.int16]] = field(default_factory=list)
    ts_us: list[npt.NDArray[np.int64]] = field(default_factory=list)
    value: list[npt.NDArray[np.float64]] = field(default_factory=list)
    received_at_us: list[npt.NDArray[np.int64]] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    messages: int = 0

    @property
    def readings(self) -> int:
        return sum(a.size for a in self.quantity)


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int
    duplicates: int
    dirty_windows: int
    rejected: int


def write_batch(conn: psycopg.Connection[Any], batch: Batch) -> WriteResult:
    """Write `batch` in one transaction and NOTIFY the processors. Raises psycopg errors; the caller retries."""
    accepted = duplicates = dirty = 0
    with conn.transaction():
        if batch.quantity:
            sensor_key = np.concatenate(batch.sensor_key)
            quantity = np.concatenate(batch.quantity)
            ts_us = np.concatenate(batch.ts_us)
            value = np.concatenate(batch.value)
            received_us = np.concatenate(batch.received_at_us)
            conn.execute(_STAGING)
            with conn.cursor().copy(
                "COPY ingest_staging (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(
                    encode_binary_copy(
                        [
                            ("int4", sensor_key),
                            ("int2", quantity),
                            ("timestamptz", ts_us),
                            ("float8", value),
                            ("timestamptz", received_us),
                        ]
                    )
                )
            row = conn.execute(_INSERT_AND_MARK).fetchone()
            assert row is not None
            accepted, dirty = int(row[0]), int(row[1])
            duplicates = int(quantity.size) - accepted
        if batch.rejected:
            _store_rejections(conn, batch.rejected)
        if dirty:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_DIRTY, str(dirty)))
    return WriteResult(accepted, duplicates, dirty, len(batch.rejected))


def _store_rejections(conn: psycopg.Connection[Any], rejected: list[RejectedMessage]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rejected (received_at, topic, city, kind, sensor_id, sensor_key, reason, detail, payload,"
            " payload_size) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    datetime.fromtimestamp(r.received_at_s, tz=UTC),
                    r.topic,
                    r.city,
                    r.kind,
                    r.sensor_id,
                    r.sensor_key,
                    r.reason,
                    r.detail,
                    r.payload,
                    r.payload_size,
                )
                for r in rejected
            ],
        )
