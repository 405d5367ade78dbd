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
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors as pg_errors

from ingest.batch import Batch
from ingest.conflicts import Resolution, key_order, resolve_keys
from ingest.frames import record_frames
from ingest.outcome import Rejection, safe_text
from ingest.quota import Allotment, PayloadClaim, RejectedQuota
from ingest.tallies import Tallies, run_starts
from livinglab.resilience import DatabasePolicy
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
# Windows are upserted in key order, so concurrent ingesters lock them in the same order and cannot deadlock.
_MARK_WINDOWS = """
WITH dirty AS (
    INSERT INTO dirty_windows (sensor_key, quantity, window_start)
    SELECT k, q, to_timestamp(w) FROM unnest(%(wk)s::int4[], %(wq)s::int2[], %(ww)s::float8[]) AS d (k, q, w)
    ORDER BY k, q, w
    ON CONFLICT (sensor_key, quantity, window_start)
    DO UPDATE SET version = dirty_windows.version + 1, marked_at = now()
)
SELECT pg_notify(%(channel)s, %(windows)s::text) WHERE %(windows)s::int > 0
"""
_COPY_REJECTED = (
    "COPY rejected (received_at, topic, city, kind, sensor_id, sensor_key, reason, detail, payload, payload_size,"
    " payload_dropped) FROM STDIN"
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
    #: LoRaWAN frames missed by frame counter, per message that revealed a gap (message index -> frames).
    frames_missed: dict[int, int] = field(default_factory=dict)
    #: Rejected messages stored without their payload (the quota was used up), and the payload bytes left out.
    payloads_dropped: int = 0
    payload_bytes_dropped: int = 0


def _distinct_sorted(*columns: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """The distinct rows of columns that are already sorted (equal rows adjacent)."""
    starts = run_starts(list(columns))
    return [c[starts] for c in columns]


class BatchWriter:
    """Owns the ingester's database connection and writes batches through it."""

    def __init__(
        self,
        conninfo: str,
        *,
        application_name: str = "livinglab-ingest",
        allowed_lateness_s: float = 7200.0,
        payload_cap_bytes: int = 64 * 1024,
        policy: DatabasePolicy | None = None,
        quota: RejectedQuota | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.policy = policy
        self.quota = quota
        self.application_name = application_name
        self.allowed_lateness_s = allowed_lateness_s
        self.payload_cap_bytes = payload_cap_bytes
        self._conn: psycopg.Connection[Any] | None = None
        self._staging_ready = False
        #: Counters and latency counts of committed batches, not written yet (see `ingest.tallies`).
        self.pending = Tallies()

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection (autocommit; batches use explicit transactions), connecting when needed."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.conninfo, policy=self.policy, application_name=self.application_name, autocommit=True
            )
            self._staging_ready = False
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: Batch, *, write_tallies: bool = True) -> WriteResult:
        """Store `batch` in one transaction. Raises psycopg errors (the connection is closed when it broke).

        `write_tallies=False` keeps the batch's counters and latency counts in `pending` for a later batch.
        """
        through_staging = False
        races = 0
        while True:
            conn = self.connection()
            try:
                with conn.transaction():
                    result, tallies = self.store(conn, batch, through_staging=through_staging)
                    if write_tallies:
                        tallies = self.pending.merged(tallies)
                        tallies.write(conn)
                self.pending = Tallies() if write_tallies else self.pending.merged(tallies)
                return result
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

    def flush_tallies(self) -> None:
        """Write the pending tallies in a transaction of their own (before stopping)."""
        if self.pending:
            conn = self.connection()
            with conn.transaction():
                self.pending.write(conn)
            self.pending = Tallies()

    def store(
        self, conn: psycopg.Connection[Any], batch: Batch, *, through_staging: bool, store_rejections: bool = True
    ) -> tuple[WriteResult, Tallies]:
        """The body of a batch's transaction, inside the caller's transaction on `conn` (this writer's connection).

        Returns what was written and the batch's tallies, which the caller writes. `store_rejections=False` leaves
        rejected messages out of `rejected` (a replay records its outcome on the stored message instead), and frame
        counters of LoRaWAN uplinks alone (they count live uplinks, which were counted when they arrived).
        """
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
        (wk, wq, wm) = _distinct_sorted(sensor[keep], rows.quantity[keep], rows.ts_us[keep] // 60_000_000)
        windows = int(wk.size)
        conn.execute(
            _MARK_WINDOWS,
            {
                "wk": wk.tolist(),
                "wq": wq.tolist(),
                "ww": (wm * 60).astype(np.float64).tolist(),
                "windows": windows,
                "channel": CHANNEL_DIRTY,
            },
        )
        allotment = None
        if rejections and store_rejections:
            allotment = self._store_rejections(conn, batch, rejections)
        missed = None
        if batch.fcnt is not None and store_rejections:
            missed = record_frames(conn, batch.sensor_key, batch.fcnt)
        result = WriteResult(
            inserted=int(insert.sum()),
            duplicates=int(resolution.duplicate.sum()),
            late=int((late & insert).sum()),
            windows=windows,
            rejections=rejections,
            through_staging=through_staging,
            frames_missed={} if missed is None else {i: int(missed[i]) for i in np.flatnonzero(missed).tolist()},
            payloads_dropped=allotment.dropped if allotment else 0,
            payload_bytes_dropped=allotment.dropped_bytes if allotment else 0,
        )
        return result, self._tallies(batch, resolution, late, rejections, missed)

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
        late: npt.NDArray[np.bool_],
        rejections: dict[int, Rejection],
        frames_missed: npt.NDArray[np.int64] | None,
    ) -> Tallies:
        rows = batch.rows
        insert = resolution.insert
        m = len(batch)
        rejected = np.zeros(m, dtype=np.int64)
        if rejections:
            rejected[np.fromiter(rejections, dtype=np.int64, count=len(rejections))] = 1
        ignored = None
        if batch.ignored is not None:
            ignored = np.where(rejected == 0, batch.ignored, 0)  # members of a rejected uplink were not ignored
        tallies = Tallies.of_messages(
            batch.sensor_key,
            batch.received_at_s,
            accepted=np.bincount(rows.msg[insert], minlength=m),
            rejected=rejected,
            duplicates=np.bincount(rows.msg[resolution.duplicate], minlength=m),
            late=np.bincount(rows.msg[insert & late], minlength=m),
            ignored=ignored,
            frames_missed=frames_missed,
        )
        tallies.add_latency(batch.row_sensor_key[insert], batch.received_at_s[rows.msg[insert]], rows.ts_us[insert])
        return tallies

    def _store_rejections(
        self, conn: psycopg.Connection[Any], batch: Batch, rejections: dict[int, Rejection]
    ) -> Allotment | None:
        cap = self.payload_cap_bytes
        order = sorted(rejections)
        allotment = None
        if self.quota is not None:
            claims = [
                PayloadClaim(
                    batch.messages[i].topic,
                    batch.topics[i],
                    int(batch.sensor_key[i]),
                    batch.messages[i].received_at_s,
                    min(cap, len(batch.messages[i].payload)),
                )
                for i in order
            ]
            allotment = self.quota.allot(conn, claims, time.time())
        with conn.cursor().copy(_COPY_REJECTED) as copy:
            for n, i in enumerate(order):
                message, topic, rejection = batch.messages[i], batch.topics[i], rejections[i]
                key = int(batch.sensor_key[i])
                kept = allotment is None or allotment.kept[n]
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
                        message.payload[:cap] if kept else b"",
                        len(message.payload),
                        not kept,
                    )
                )
        return allotment
