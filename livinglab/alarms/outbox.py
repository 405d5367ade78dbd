"""The notification outbox: the interface between alarm episodes and the deliverers.

When an alarm is raised, acknowledged or cleared, `enqueue_deliveries` inserts one `notification_deliveries` row
per channel of the rule that exists, in the transaction that changes the alarm (so an event is recorded and queued
together, or neither), and NOTIFYs `livinglab_deliveries`, which wakes the deliverers at commit. The payload is
what every channel sends: `{"event": <event>, "alarm": <the alarm object>}`. Channel ids that name no channel
(deleted since the rule was written) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from livinglab.notifications import CHANNEL_DELIVERIES

_ENQUEUE = """
INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload)
SELECT c.channel_id, %(alarm_id)s, %(event)s, %(payload)s::jsonb FROM notification_channels c
WHERE c.channel_id = ANY(%(channels)s::text[])
ORDER BY c.channel_id
"""
_NOTIFY = "SELECT pg_notify(%s, %s)"


def delivery_payload(event: str, alarm: Mapping[str, Any]) -> dict[str, Any]:
    """The body every channel delivers for `event` of `alarm`."""
    return {"event": event, "alarm": dict(alarm)}


_ENQUEUE_MANY = """
INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload)
SELECT c.channel_id, q.alarm_id, %(event)s, q.payload::jsonb
FROM unnest(%(alarm_ids)s::int8[], %(channels)s::text[], %(payloads)s::text[])
     WITH ORDINALITY AS q(alarm_id, channel, payload, n)
JOIN notification_channels c ON c.channel_id = q.channel
ORDER BY q.n
"""


def enqueue_many(
    conn: psycopg.Connection[Any], *, event: str, alarms: Sequence[tuple[Mapping[str, Any], Sequence[str]]]
) -> int:
    """`enqueue_deliveries` for many alarms of one event at once: (alarm, channel ids) pairs; one NOTIFY."""
    rows = [
        (alarm["alarm_id"], channel, json.dumps(delivery_payload(event, alarm), separators=(",", ":")))
        for alarm, channel_ids in alarms
        for channel in channel_ids
    ]
    if not rows:
        return 0
    alarm_ids, channels, payloads = (list(column) for column in zip(*rows, strict=True))
    cur = conn.execute(
        _ENQUEUE_MANY, {"event": event, "alarm_ids": alarm_ids, "channels": channels, "payloads": payloads}
    )
    if cur.rowcount:
        conn.execute(_NOTIFY, (CHANNEL_DELIVERIES, event))
    return max(cur.rowcount, 0)


def _params(event: str, alarm: Mapping[str, Any], channel_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "alarm_id": alarm["alarm_id"],
        "event": event,
        "payload": json.dumps(delivery_payload(event, alarm), separators=(",", ":")),
        "channels": list(channel_ids),
    }


def enqueue_deliveries(
    conn: psycopg.Connection[Any], *, event: str, alarm: Mapping[str, Any], channel_ids: Sequence[str]
) -> int:
    """Queue `event` of `alarm` for each existing channel of `channel_ids`; returns the deliveries queued. Call
    inside the transaction that changes the alarm."""
    if not channel_ids:
        return 0
    cur = conn.execute(_ENQUEUE, _params(event, alarm, channel_ids))
    if cur.rowcount:
        conn.execute(_NOTIFY, (CHANNEL_DELIVERIES, event))
    return max(cur.rowcount, 0)


async def enqueue_deliveries_async(
    conn: psycopg.AsyncConnection[Any], *, event: str, alarm: Mapping[str, Any], channel_ids: Sequence[str]
) -> int:
    """`enqueue_deliveries` for asyncio code."""
    if not channel_ids:
        return 0
    cur = await conn.execute(_ENQUEUE, _params(event, alarm, channel_ids))
    if cur.rowcount:
        await conn.execute(_NOTIFY, (CHANNEL_DELIVERIES, event))
    return max(cur.rowcount, 0)
