"""Claiming work from the two queues: `dirty_windows` (minutes, filled by the ingester) and `dirty_rollups` (hours
and days, filled by the minute step).

A claim is its own short transaction: `FOR UPDATE SKIP LOCKED` picks rows nobody holds, and a lease
(`claimed_until`, `claimed_by`) keeps other processors off them after that transaction commits. So any number of
processors share the work and the ingester never waits on a computation.

Leases are short and their owner keeps them: while it computes, a processor renews the lease of the round in hand
(`renew_windows`, `renew_rollups`, from `processing.leases`), and when a round fails, or when it (re)connects or
restarts under the same worker id, it takes back everything still claimed in its name (`take_back`), so those
windows are computed again at once. A processor that dies stops renewing: its windows move on to the others when
the lease runs out, seconds later.

An hour or day that is still running (the current one) is due a delay after it is queued, so its raw readings are
not read again for every minute; a past one (late readings, a backlog) is due at once, but is not claimed while
minutes of it are still queued (for at most `PAST_ROLLUP_WAIT_S`): the minute step would queue it again at once,
and a backlog of one hour's 60,000 minutes would recompute its 1,000 hours at every rollup round (13 of the 23 s
the scale benchmark's recent hour took).

Release runs in the transaction that stores the results: a row whose `version` is still the claimed one is deleted;
a row re-dirtied meanwhile (the ingester or the minute step bumped `version`) is released and computed again.
Release locks the rows in key order, the order in which the ingester and the minute step upsert them, so the
writers cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from processing._pgio import adapt_numpy, fetch_arrays, us_to_datetime64

_AS_ARRAYS = """
WITH c AS ({claim})
SELECT coalesce(array_agg(sensor_key), '{{}}'), coalesce(array_agg(quantity), '{{}}'),
       coalesce(array_agg(width_s), '{{}}'), coalesce(array_agg(window_start), '{{}}'),
       coalesce(array_agg(version), '{{}}')
FROM c
"""

_CLAIM_WINDOWS = """
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
RETURNING d.sensor_key, d.quantity, 60 AS width_s, d.window_start, d.version
"""

_RELEASE_WINDOWS = """
WITH claimed AS (
    SELECT * FROM unnest(%(key)s::int4[], %(quantity)s::int2[], %(start)s::timestamptz[], %(version)s::int8[])
        AS c(sensor_key, quantity, window_start, version)
), locked AS (
    SELECT d.sensor_key, d.quantity, d.window_start, d.version = c.version AS unchanged, d.claimed_by
    FROM dirty_windows d JOIN claimed c USING (sensor_key, quantity, window_start)
    ORDER BY d.sensor_key, d.quantity, d.window_start
    FOR UPDATE OF d
), done AS (
    DELETE FROM dirty_windows d USING locked l
    WHERE l.unchanged AND (d.sensor_key, d.quantity, d.window_start) = (l.sensor_key, l.quantity, l.window_start)
    RETURNING 1
)
UPDATE dirty_windows d SET claimed_until = NULL, claimed_by = NULL
FROM locked l
WHERE NOT l.unchanged AND l.claimed_by = %(worker)s
  AND (d.sensor_key, d.quantity, d.window_start) = (l.sensor_key, l.quantity, l.window_start)
"""

_CLAIM_ROLLUPS = """
UPDATE dirty_rollups d
SET claimed_until = now() + make_interval(secs => %(lease)s), claimed_by = %(worker)s
FROM (
    SELECT sensor_key, quantity, width_s, window_start FROM dirty_rollups r
    WHERE (due_at <= now() OR NOT %(due_only)s) AND (claimed_until IS NULL OR claimed_until < now())
      -- A past hour or day whose minutes are still queued would be stale as soon as computed (the minute step
      -- re-queues it): it waits for them, at most PAST_ROLLUP_WAIT_S after it was first queued.
      AND (NOT %(due_only)s OR r.window_start + make_interval(secs => r.width_s) > now()
           OR r.due_at <= now() - make_interval(secs => %(past_wait)s)
           OR NOT EXISTS (SELECT 1 FROM dirty_windows w
                          WHERE w.sensor_key = r.sensor_key AND w.quantity = r.quantity
                            AND w.window_start >= r.window_start
                            AND w.window_start < r.window_start + make_interval(secs => r.width_s)))
    ORDER BY due_at, window_start
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) c
WHERE (d.sensor_key, d.quantity, d.width_s, d.window_start) = (c.sensor_key, c.quantity, c.width_s, c.window_start)
RETURNING d.sensor_key, d.quantity, d.width_s, d.window_start, d.version
"""

_RELEASE_ROLLUPS = """
WITH claimed AS (
    SELECT * FROM unnest(
        %(key)s::int4[], %(quantity)s::int2[], %(width)s::int4[], %(start)s::timestamptz[], %(version)s::int8[]
    ) AS c(sensor_key, quantity, width_s, window_start, version)
), locked AS (
    SELECT d.sensor_key, d.quantity, d.width_s, d.window_start, d.version = c.version AS unchanged, d.claimed_by
    FROM dirty_rollups d JOIN claimed c USING (sensor_key, quantity, width_s, window_start)
    ORDER BY d.sensor_key, d.quantity, d.width_s, d.window_start
    FOR UPDATE OF d
), done AS (
    DELETE FROM dirty_rollups d USING locked l
    WHERE l.unchanged
      AND (d.sensor_key, d.quantity, d.width_s, d.window_start) = (l.sensor_key, l.quantity, l.width_s, l.window_start)
    RETURNING 1
)
UPDATE dirty_rollups d SET claimed_until = NULL, claimed_by = NULL,
    due_at = CASE WHEN d.window_start + make_interval(secs => d.width_s) <= now() THEN now()
                  ELSE now() + make_interval(secs => CASE WHEN d.width_s = 3600 THEN %(hour_delay)s
                                                          ELSE %(day_delay)s END) END
FROM locked l
WHERE NOT l.unchanged AND l.claimed_by = %(worker)s
  AND (d.sensor_key, d.quantity, d.width_s, d.window_start) = (l.sensor_key, l.quantity, l.width_s, l.window_start)
"""

_RENEW_WINDOWS = """
UPDATE dirty_windows d SET claimed_until = now() + make_interval(secs => %(lease)s)
FROM (
    SELECT d.sensor_key, d.quantity, d.window_start
    FROM dirty_windows d
    JOIN unnest(%(key)s::int4[], %(quantity)s::int2[], %(start)s::timestamptz[])
        AS c(sensor_key, quantity, window_start) USING (sensor_key, quantity, window_start)
    WHERE d.claimed_by = %(worker)s
    ORDER BY 1, 2, 3
    FOR UPDATE OF d SKIP LOCKED
) c
WHERE (d.sensor_key, d.quantity, d.window_start) = (c.sensor_key, c.quantity, c.window_start)
"""

_RENEW_ROLLUPS = """
UPDATE dirty_rollups d SET claimed_until = now() + make_interval(secs => %(lease)s)
FROM (
    SELECT d.sensor_key, d.quantity, d.width_s, d.window_start
    FROM dirty_rollups d
    JOIN unnest(%(key)s::int4[], %(quantity)s::int2[], %(width)s::int4[], %(start)s::timestamptz[])
        AS c(sensor_key, quantity, width_s, window_start) USING (sensor_key, quantity, width_s, window_start)
    WHERE d.claimed_by = %(worker)s
    ORDER BY 1, 2, 3, 4
    FOR UPDATE OF d SKIP LOCKED
) c
WHERE (d.sensor_key, d.quantity, d.width_s, d.window_start) = (c.sensor_key, c.quantity, c.width_s, c.window_start)
"""

# Rows locked by someone else at that moment (an ingester re-marking a window, a stale round ending) are skipped:
# their lease runs out on its own, seconds later, since nobody renews it.
_TAKE_BACK = """
WITH windows AS (
    UPDATE dirty_windows d SET claimed_until = NULL, claimed_by = NULL
    FROM (SELECT sensor_key, quantity, window_start FROM dirty_windows WHERE claimed_by = %(worker)s
          ORDER BY 1, 2, 3 FOR UPDATE SKIP LOCKED) c
    WHERE (d.sensor_key, d.quantity, d.window_start) = (c.sensor_key, c.quantity, c.window_start)
    RETURNING 1
), rollups AS (
    UPDATE dirty_rollups d SET claimed_until = NULL, claimed_by = NULL
    FROM (SELECT sensor_key, quantity, width_s, window_start FROM dirty_rollups WHERE claimed_by = %(worker)s
          ORDER BY 1, 2, 3, 4 FOR UPDATE SKIP LOCKED) c
    WHERE (d.sensor_key, d.quantity, d.width_s, d.window_start)
        = (c.sensor_key, c.quantity, c.width_s, c.window_start)
    RETURNING 1
)
SELECT (SELECT count(*) FROM windows) + (SELECT count(*) FROM rollups)
"""

#: Queues the rollups of the hours and days of some minutes (deduplicated, in key order: see the module doc).
MARK_ROLLUPS = """
INSERT INTO dirty_rollups AS d (sensor_key, quantity, width_s, window_start, due_at)
SELECT c.sensor_key, c.quantity, w.width_s, c.start,
       CASE WHEN c.start + w.width <= now() THEN now() ELSE now() + make_interval(secs => w.delay_s) END
FROM (VALUES (3600, interval '1 hour', %(hour_delay)s::float8), (86400, interval '1 day', %(day_delay)s::float8))
    AS w(width_s, width, delay_s)
CROSS JOIN LATERAL (
    SELECT m.sensor_key, m.quantity, date_bin(w.width, m.window_start, 'epoch'::timestamptz) AS start
    FROM unnest(%(key)s::int4[], %(quantity)s::int2[], %(start)s::timestamptz[])
        AS m(sensor_key, quantity, window_start)
) c
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4
ON CONFLICT (sensor_key, quantity, width_s, window_start) DO UPDATE SET version = d.version + 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """Claimed windows, column-wise: window i is (sensor_key[i], quantity[i], width_s[i], window_start_us[i])."""

    sensor_key: npt.NDArray[np.int32]
    quantity: npt.NDArray[np.int16]
    width_s: npt.NDArray[np.int32]
    #: Window starts, microseconds since the Unix epoch.
    window_start_us: npt.NDArray[np.int64]
    version: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.sensor_key.size)

    @property
    def window_start(self) -> npt.NDArray[np.datetime64]:
        """Window starts as datetime64[us] (sent to PostgreSQL as timestamptz)."""
        return us_to_datetime64(self.window_start_us)

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Claim:
        """The claimed windows selected by `rows`."""
        return Claim(*(column[rows] for column in self._columns()))

    def _columns(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.sensor_key, self.quantity, self.width_s, self.window_start_us, self.version)

    def params(self) -> dict[str, Any]:
        return {
            "key": self.sensor_key,
            "quantity": self.quantity,
            "width": self.width_s,
            "start": self.window_start,
            "version": self.version,
        }


def _claim(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Claim:
    adapt_numpy(conn)
    with conn.transaction():
        key, quantity, width, start, version = fetch_arrays(conn, _AS_ARRAYS.format(claim=query), params)
    return Claim(
        key.astype(np.int32), quantity.astype(np.int16), width.astype(np.int32), start, version.astype(np.int64)
    )


def claim_windows(conn: psycopg.Connection[Any], *, worker: str, limit: int, lease_s: float) -> Claim:
    """Claim up to `limit` dirty minutes, oldest first, in a transaction of its own."""
    return _claim(conn, _CLAIM_WINDOWS, {"lease": lease_s, "worker": worker, "limit": limit})


def release_windows(conn: psycopg.Connection[Any], claim: Claim, *, worker: str) -> None:
    """Delete the claimed minutes not re-dirtied since the claim; release the others for another round."""
    conn.execute(_RELEASE_WINDOWS, {**claim.params(), "worker": worker})


#: How long a past hour or day waits for its queued minutes before it is computed anyway (a steady trickle of late
#: readings into one past hour must not keep it waiting for ever).
PAST_ROLLUP_WAIT_S = 60.0


def claim_rollups(
    conn: psycopg.Connection[Any], *, worker: str, limit: int, lease_s: float, due_only: bool = True
) -> Claim:
    """Claim up to `limit` hours and days whose delay has passed (any, with `due_only=False`), in a transaction of
    its own."""
    params = {"lease": lease_s, "worker": worker, "limit": limit, "due_only": due_only, "past_wait": PAST_ROLLUP_WAIT_S}
    return _claim(conn, _CLAIM_ROLLUPS, params)


def release_rollups(
    conn: psycopg.Connection[Any], claim: Claim, *, worker: str, hour_delay_s: float, day_delay_s: float
) -> None:
    """Like `release_windows`; a re-dirtied current hour or day is due again after its delay."""
    conn.execute(
        _RELEASE_ROLLUPS,
        {**claim.params(), "worker": worker, "hour_delay": hour_delay_s, "day_delay": day_delay_s},
    )


def renew(conn: psycopg.Connection[Any], claim: Claim, *, rollups: bool, worker: str, lease_s: float) -> int:
    """Extend the lease of the windows of `claim` (minutes, or hours and days with `rollups`) still claimed by
    `worker`, in a transaction of its own; returns how many. Never waits for a row lock."""
    adapt_numpy(conn)
    with conn.transaction():
        query = _RENEW_ROLLUPS if rollups else _RENEW_WINDOWS
        return conn.execute(query, {**claim.params(), "worker": worker, "lease": lease_s}).rowcount


def take_back(conn: psycopg.Connection[Any], *, worker: str) -> int:
    """Release every window still claimed by `worker` (after a failed round, a reconnect or a restart: what it had
    claimed is not being computed any more), in a transaction of its own; returns how many."""
    with conn.transaction():
        row = conn.execute(_TAKE_BACK, {"worker": worker}).fetchone()
    return int(row[0]) if row else 0


def mark_rollups(conn: psycopg.Connection[Any], claim: Claim, *, hour_delay_s: float, day_delay_s: float) -> None:
    """Queue the hours and days of the claimed minutes (inside the transaction that stored the minutes)."""
    conn.execute(MARK_ROLLUPS, {**claim.params(), "hour_delay": hour_delay_s, "day_delay": day_delay_s})
