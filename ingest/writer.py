"""Writing a batch: one transaction; the caller acknowledges the batch's messages only after it returns.

The transaction: binary COPY of the new readings straight into `readings`; the touched (sensor, quantity, minute)
windows into `dirty_windows` (insert, or bump `version` so a processor computing the window does it again); the
per-sensor, per-hour counters and latency histogram; the rejected messages; then NOTIFY `livinglab_dirty`.

The COPY fails with a unique violation when a reading is already stored (a device resending, a redelivery after a
crash). The transaction is then redone through a staging table: the batch's keys are copied there, joined with
`readings` to find what is stored, and every message is judged again (`ingest.conflicts`). A unique violation on
that path means another ingester stored the same key meanwhile; the next attempt sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors as pg_errors

from ingest.batch import Batch
from ingest.conflicts import Resolution, key_order, resolve_keys
from ingest.outcome import Rejection, safe_text
from livinglab.quality import latency_buckets
from livinglab.storage import CHANNEL_DIRTY, connect
from livinglab.storage.copy import encode_binary_copy

log = logging.getLogger(__name__)

_COPY_READINGS = "COPY readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    idx integer NOT NULL,
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    ts timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = "COPY ingest_staging (idx, sensor_key, quantity, ts) FROM STDIN (FORMAT BINARY)"
_STORED_VALUES = "SELECT s.idx, r.value FROM ingest_staging s JOIN readings r USING (sensor_key, quantity, ts)"
# Rows are upserted in key order, so concurrent ingesters lock them in the same order and cannot deadlock.
_TALLIES = """
WITH dirty AS (
    INSERT INTO dirty_windows (sensor_key, quantity, window_start)
    SELECT k, q, to_timestamp(w) FROM unnest(%(wk)s::int4[], %(wq)s::int2[], %(ww)s::float8[]) AS d (k, q, w)
    ORDER BY k, q, w
    ON CONFLICT (sensor_key, quantity, window_start)
    DO UPDATE SET version = dirty_windows.version + 1, marked_at = now()
), counters AS (
    INSERT INTO ingest_counters AS c (sensor_key, hour, messages, accepted, rejected, duplicates, late, last_seen)
    SELECT k, to_timestamp(h), m, a, r, d, l, to_timestamp(s)
    FROM unnest(%(ck)s::int4[], %(ch)s::float8[], %(cm)s::int8[], %(ca)s::int8[], %(cr)s::int8[], %(cd)s::int8[],
                %(cl)s::int8[], %(cs)s::float8[]) AS t (k, h, m, a, r, d, l, s)
    ORDER BY k, h
    ON CONFLICT (sensor_key, hour) DO UPDATE SET
        messages = c.messages + excluded.messages,
        accepted = c.accepted + excluded.accepted,
        rejected = c.rejected + excluded.rejected,
        duplicates = c.duplicates + excluded.duplicates,
        late = c.late + excluded.late,
        last_seen = greatest(c.last_seen, excluded.last_seen)
), latency AS (
    INSERT INTO ingest_latency AS l (sensor_key, hour, bucket, n)
    SELECT k, to_timestamp(h), b, n
    FROM unnest(%(lk)s::int4[], %(lh)s::float8[], %(lb)s::int2[], %(ln)s::int8[]) AS t (k, h, b, n)
    ORDER BY k, h, b
    ON CONFLICT (sensor_key, hour, bucket) DO UPDATE SET n = l.n + excluded.n
)
SELECT pg_notify(%(channel)s, %(windows)s::text) WHERE %(windows)s::int > 0
"""
_COPY_REJECTED = (
    "COPY rejected (received_at, topic, city, kind, sensor_id, sensor_key, reason, detail, payload, payload_size)"
    " FROM STDIN"
)
#: Unique violations in a row before giving up on a batch for now (each one means a concurrent ingester won a race).
_MAX_RACES = 20


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch changed."""

    inserted: int
    duplicates: int
    late: int
    windows: int
    rejections: dict[int, Rejection]
    through_staging: bool


def group_rows(*columns: npt.NDArray[Any]) -> tuple[list[npt.NDArray[Any]], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Distinct rows of the given columns: (the distinct values per column, sort order, start of each group).

    Groups are the runs of `order`: group g is `order[starts[g]:starts[g + 1]]`.
    """
    order = np.lexsort(columns[::-1])
    sorted_columns = [c[order] for c in columns]
    starts = _run_starts(sorted_columns)
    return [c[starts] for c in sorted_columns], order, starts


def _run_starts(sorted_columns: list[npt.NDArray[Any]]) -> npt.NDArray[np.intp]:
    """Where each run of equal rows starts, in columns sorted so that equal rows are adjacent."""
    n = sorted_columns[0].size
    change = np.zeros(n, dtype=np.bool_)
    if n:
        change[0] = True
        for c in sorted_columns:
            change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


def _distinct_sorted(*columns: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """The distinct rows of columns that are already sorted (equal rows adjacent)."""
    starts = _run_starts(list(columns))
    return [c[starts] for c in columns]


def _sums(values: npt.NDArray[Any], order: npt.NDArray[np.intp], starts: npt.NDArray[np.intp]) -> list[int]:
    if not starts.size:
        return []
    return np.add.reduceat(values[order], starts).tolist()  # type: ignore[no-any-return]


class BatchWriter:
    """Owns the ingester's database connection and writes batches through it."""

    def __init__(
        self,
        conninfo: str,
        *,
        application_name: str = "livinglab-ingest",
        allowed_lateness_s: float = 7200.0,
        payload_cap_bytes: int = 64 * 1024,
        statement_timeout_ms: int | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.statement_timeout_ms = statement_timeout_ms
        self.application_name = application_name
        self.allowed_lateness_s = allowed_lateness_s
        self.payload_cap_bytes = payload_cap_bytes
        self._conn: psycopg.Connection[Any] | None = None
        self._staging_ready = False

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection (autocommit; batches use explicit transactions), connecting when needed."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.conninfo,
                application_name=self.application_name,
                autocommit=True,
                statement_timeout_ms=self.statement_timeout_ms,
            )
            self._staging_ready = False
        return self._conn

    @property
    def open_connection(self) -> psycopg.Connection[Any] | None:
        """The connection if one is open (for a watchdog; never connects)."""
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: Batch) -> WriteResult:
        """Store `batch` in one transaction. Raises psycopg errors (the connection is closed when it broke)."""
        through_staging = False
        races = 0
        while True:
            conn = self.connection()
            try:
                with conn.transaction():
                    return self._write(conn, batch, through_staging=through_staging)
            except pg_errors.UniqueViolation:
                if through_staging:
                    races += 1
                    if races > _MAX_RACES:
                        raise
                through_staging = True
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                races += 1
                if races > _MAX_RACES:
                    raise
            except psycopg.OperationalError:
                self.close()
                raise

    def _write(self, conn: psycopg.Connection[Any], batch: Batch, *, through_staging: bool) -> WriteResult:
        rows = batch.rows
        sensor = batch.row_sensor_key
        stored: dict[int, float] | None = None
        if through_staging and len(rows):
            stored = self._stored_values(conn, sensor, batch)
        order = key_order(sensor, rows.quantity, rows.ts_us)
        resolution = resolve_keys(sensor, rows.quantity, rows.ts_us, rows.value, rows.msg, stored, order)
        received_s = batch.received_at_s[rows.msg]
        insert = resolution.insert
        # The stored rows in key order: the primary key index then takes each sensor's rows as one ascending run
        # instead of jumping between sensors message by message (a measurably faster COPY), and the windows they
        # touch come out grouped.
        keep = order[insert[order]]
        if keep.size:
            with conn.cursor().copy(_COPY_READINGS) as copy:
                copy.write(
                    encode_binary_copy(
                        [
                            ("int4", sensor[keep]),
                            ("int2", rows.quantity[keep]),
                            ("timestamptz", rows.ts_us[keep]),
                            ("float8", rows.value[keep]),
                            ("timestamptz", np.rint(received_s[keep] * 1e6).astype(np.int64)),
                        ]
                    )
                )
        rejections = {**batch.rejections, **resolution.conflicts}
        late = self._late(rows.ts_us, received_s)
        params, windows = self._tallies(batch, resolution, keep, late, rejections)
        conn.execute(_TALLIES, params)
        if rejections:
            self._store_rejections(conn, batch, rejections)
        return WriteResult(
            inserted=int(insert.sum()),
            duplicates=int(resolution.duplicate.sum()),
            late=int((late & insert).sum()),
            windows=windows,
            rejections=rejections,
            through_staging=through_staging,
        )

    def _stored_values(
        self, conn: psycopg.Connection[Any], sensor: npt.NDArray[np.int32], batch: Batch
    ) -> dict[int, float]:
        if not self._staging_ready:
            conn.execute(_CREATE_STAGING)
            self._staging_ready = True
        rows = batch.rows
        with conn.cursor().copy(_COPY_STAGING) as copy:
            copy.write(
                encode_binary_copy(
                    [
                        ("int4", np.arange(len(rows), dtype=np.int32)),
                        ("int4", sensor),
                        ("int2", rows.quantity),
                        ("timestamptz", rows.ts_us),
                    ]
                )
            )
        return {int(idx): float(value) for idx, value in conn.execute(_STORED_VALUES).fetchall()}

    def _late(self, ts_us: npt.NDArray[np.int64], received_s: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Readings whose 1-minute window was already final: window end + allowed lateness < received_at."""
        window_end_s = (ts_us // 60_000_000 + 1) * 60
        return window_end_s + self.allowed_lateness_s < received_s

    def _tallies(
        self,
        batch: Batch,
        resolution: Resolution,
        keep: npt.NDArray[np.intp],
        late: npt.NDArray[np.bool_],
        rejections: dict[int, Rejection],
    ) -> tuple[dict[str, Any], int]:
        rows = batch.rows
        insert = resolution.insert
        sensor = batch.row_sensor_key
        hour_of_msg = np.floor(batch.received_at_s / 3600.0).astype(np.int64)
        params: dict[str, Any] = {"channel": CHANNEL_DIRTY}

        (wk, wq, wm) = _distinct_sorted(sensor[keep], rows.quantity[keep], rows.ts_us[keep] // 60_000_000)
        params.update(wk=wk.tolist(), wq=wq.tolist(), ww=(wm * 60).astype(np.float64).tolist())
        windows = int(wk.size)
        params["windows"] = windows

        received_s = batch.received_at_s[rows.msg[insert]]
        latency_s = received_s - rows.ts_us[insert] / 1e6
        (lk, lh, lb), order, starts = group_rows(
            sensor[insert], hour_of_msg[rows.msg[insert]], latency_buckets(latency_s).astype(np.int64)
        )
        params.update(lk=lk.tolist(), lh=(lh * 3600).astype(np.float64).tolist(), lb=lb.tolist())
        params["ln"] = np.diff(np.append(starts, order.size)).tolist()

        m = len(batch)
        known = batch.sensor_key >= 0
        per_msg = {
            "cm": np.ones(m, dtype=np.int64),
            "ca": np.bincount(rows.msg[insert], minlength=m),
            "cr": np.zeros(m, dtype=np.int64),
            "cd": np.bincount(rows.msg[resolution.duplicate], minlength=m),
            "cl": np.bincount(rows.msg[insert & late], minlength=m),
        }
        if rejections:
            per_msg["cr"][np.fromiter(rejections, dtype=np.int64, count=len(rejections))] = 1
        (ck, ch), order, starts = group_rows(batch.sensor_key[known], hour_of_msg[known])
        params.update(ck=ck.tolist(), ch=(ch * 3600).astype(np.float64).tolist())
        for name, values in per_msg.items():
            params[name] = _sums(values[known], order, starts)
        params["cs"] = np.maximum.reduceat(batch.received_at_s[known][order], starts).tolist() if starts.size else []
        return params, windows

    def _store_rejections(self, conn: psycopg.Connection[Any], batch: Batch, rejections: dict[int, Rejection]) -> None:
        cap = self.payload_cap_bytes
        with conn.cursor().copy(_COPY_REJECTED) as copy:
            for i in sorted(rejections):
                message, topic, rejection = batch.messages[i], batch.topics[i], rejections[i]
                key = int(batch.sensor_key[i])
                copy.write_row(
                    (
                        datetime.fromtimestamp(message.received_at_s, tz=UTC),
                        safe_text(message.topic, 1024),
                        topic.city if topic else None,
                        topic.kind.value if topic else None,
                        topic.sensor_id if topic else None,
                        key if key >= 0 else None,
                        rejection.reason.value,
                        safe_text(rejection.detail, 2000),
                        message.payload[:cap],
                        len(message.payload),
                    )
                )
