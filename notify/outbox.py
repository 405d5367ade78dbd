"""The outbox `notification_deliveries` as the deliverer sees it: claim due rows, then record each attempt.

A claim is a lease: in one short transaction the deliverer takes due pending rows (`FOR UPDATE SKIP LOCKED`, so any
number of deliverers share the work), counts the attempt and moves `next_attempt_at` to the end of the lease. It
then delivers outside any transaction and records the outcome: `delivered` (only after the receiver accepted it), or
back to `pending` with the next retry time and the error, or `failed` once the delivery is older than the retry
period. A deliverer killed in between leaves its rows pending; they come due again when the lease runs out, or at
once when it restarts under the same worker id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

_CLAIM = """
UPDATE notification_deliveries d
   SET attempts = d.attempts + 1, claimed_by = %(worker)s,
       next_attempt_at = now() + %(lease_s)s * interval '1 second'
  FROM (SELECT delivery_id FROM notification_deliveries
         WHERE status = 'pending' AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due,
       notification_channels c, alarms a
 WHERE d.delivery_id = due.delivery_id AND c.channel_id = d.channel_id AND a.alarm_id = d.alarm_id
RETURNING d.delivery_id, d.channel_id, d.event, d.payload::text, d.attempts, d.created_at,
          c.type, c.config, c.cities, a.city
"""
_DELIVERED = """
UPDATE notification_deliveries
   SET status = 'delivered', delivered_at = now(), last_error = NULL, claimed_by = NULL
 WHERE delivery_id = ANY(%(ids)s::uuid[]) AND status = 'pending'
"""
_RETRY = """
UPDATE notification_deliveries d
   SET last_error = f.error, claimed_by = NULL,
       status = CASE WHEN now() >= d.created_at + %(retry_for_s)s * interval '1 second' THEN 'failed'
                     ELSE 'pending' END,
       next_attempt_at = now() + f.delay_s * interval '1 second'
  FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(errors)s::text[], %(delays)s::float8[])
       AS f(delivery_id, attempts, error, delay_s)
 WHERE d.delivery_id = f.delivery_id AND d.status = 'pending' AND d.attempts = f.attempts
RETURNING d.delivery_id, d.status
"""
_GIVE_UP = """
UPDATE notification_deliveries d SET status = 'failed', last_error = f.error, claimed_by = NULL
  FROM unnest(%(ids)s::uuid[], %(errors)s::text[]) AS f(delivery_id, error)
 WHERE d.delivery_id = f.delivery_id AND d.status = 'pending'
"""
_TAKE_BACK = """
UPDATE notification_deliveries SET next_attempt_at = now(), claimed_by = NULL
 WHERE status = 'pending' AND claimed_by = %(worker)s AND next_attempt_at > now()
"""
_NEXT_DUE = """
SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8
  FROM notification_deliveries WHERE status = 'pending'
"""

#: Longest `last_error` stored.
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery: the outbox row with its channel and its alarm's city."""

    delivery_id: UUID
    channel_id: str
    event: str
    body: bytes  # the payload as stored: `{"event": ..., "alarm": {...}}`
    attempts: int  # including this one
    created_at: datetime
    channel_type: str
    config: dict[str, Any]
    channel_cities: tuple[str, ...]
    city: str


async def claim(conn: AsyncConnection[Any], *, worker: str, limit: int, lease_s: float) -> list[Delivery]:
    """Take up to `limit` due deliveries for `lease_s` seconds. On an autocommit connection (one statement, one
    round trip), so the claim is committed before it returns."""
    cur = await conn.execute(_CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
    rows = await cur.fetchall()
    return [
        Delivery(
            delivery_id=r[0],
            channel_id=r[1],
            event=r[2],
            body=r[3].encode(),
            attempts=r[4],
            created_at=r[5],
            channel_type=r[6],
            config=r[7] or {},
            channel_cities=tuple(r[8] or ()),
            city=r[9],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: delivered (`error` None), to be retried after `delay_s`, or failed for good
    (`permanent`)."""

    delivery: Delivery
    error: str | None = None
    permanent: bool = False
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    delivered: int
    retried: int
    failed: int


async def record_outcomes(conn: AsyncConnection[Any], outcomes: list[Outcome], *, retry_for_s: float) -> Recorded:
    """Store the outcomes of attempts, a statement per kind (autocommit: each is committed on its own). A failed
    attempt goes back to pending after its delay, or to failed once the delivery is older than `retry_for_s`. Rows
    another deliverer has taken meanwhile (its lease ran out) are left to it."""
    delivered = [o.delivery.delivery_id for o in outcomes if o.error is None]
    retries = [o for o in outcomes if o.error is not None and not o.permanent]
    give_ups = [o for o in outcomes if o.error is not None and o.permanent]
    failed = 0
    if delivered:
        await conn.execute(_DELIVERED, {"ids": delivered})
    if retries:
        cur = await conn.execute(
            _RETRY,
            {
                "ids": [o.delivery.delivery_id for o in retries],
                "attempts": [o.delivery.attempts for o in retries],
                "errors": [(o.error or "")[:MAX_ERROR_LENGTH] for o in retries],
                "delays": [o.delay_s for o in retries],
                "retry_for_s": retry_for_s,
            },
        )
        failed += sum(1 for row in await cur.fetchall() if row[1] == "failed")
    if give_ups:
        await conn.execute(
            _GIVE_UP,
            {
                "ids": [o.delivery.delivery_id for o in give_ups],
                "errors": [(o.error or "")[:MAX_ERROR_LENGTH] for o in give_ups],
            },
        )
        failed += len(give_ups)
    return Recorded(delivered=len(delivered), retried=len(retries) - (failed - len(give_ups)), failed=failed)


async def take_back(conn: AsyncConnection[Any], *, worker: str) -> int:
    """Make due at once what a previous run under this worker id held (it is dead: ids are unique per deliverer)."""
    cur = await conn.execute(_TAKE_BACK, {"worker": worker})
    return cur.rowcount


async def seconds_to_next_due(conn: AsyncConnection[Any]) -> float | None:
    """Seconds until the earliest pending delivery is due (0: due now; None: nothing pending)."""
    cur = await conn.execute(_NEXT_DUE)
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])
