"""Alarm episodes: raise, acknowledge and clear, each with its history row, its `alarm` change event and its queued
notifications, in the caller's transaction.

One episode per (rule, sensor) is open at a time (state `active` or `acknowledged`): the partial unique index
`alarms_one_open` makes a second raise of the same pair insert nothing (`ON CONFLICT DO NOTHING`), so two evaluators
that race raise it once and only the winner announces it. Acknowledging and clearing update the row only from the
states they leave (`active`; anything open), so a clear racing an acknowledgement leaves one consistent story.

The alarm object served by the API, carried by `alarm` events and delivered to channels is `alarm_object`: the fields
of CONTRACT.md section 5 plus `rule_name` and `metric`, times in ISO 8601 UTC with `Z`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from livinglab.alarms.outbox import enqueue_deliveries, enqueue_deliveries_async
from livinglab.events import EventType, publish_event, publish_event_async

AlarmEvent = Literal["raised", "acknowledged", "cleared"]
AlarmState = Literal["active", "acknowledged", "cleared"]

#: The columns of an alarm row as `alarm_object` reads them (`a`: alarms, `s`: sensors, `r`: alarm_rules).
ALARM_COLUMNS = (
    "a.alarm_id, a.rule_id, s.sensor_id, a.city, a.district, a.severity, a.state, a.raised_at, a.value,"
    " a.last_value, a.acknowledged_at, a.note, a.cleared_at, r.name AS rule_name, r.metric"
)
ALARM_FROM = "alarms a JOIN sensors s USING (sensor_key) JOIN alarm_rules r USING (rule_id)"
_SELECT_ONE = f"SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.alarm_id = %s"

_RAISE = """
INSERT INTO alarms (rule_id, sensor_key, city, district, severity, state, raised_at, value, last_value)
SELECT %(rule_id)s, s.sensor_key, s.city, s.district, %(severity)s, 'active', now(), %(value)s, %(value)s
FROM sensors s WHERE s.sensor_key = %(sensor_key)s
ON CONFLICT (rule_id, sensor_key) WHERE state <> 'cleared' DO NOTHING
RETURNING alarm_id
"""
_CLEAR = """
UPDATE alarms SET state = 'cleared', cleared_at = now(), last_value = coalesce(%(value)s, last_value)
WHERE alarm_id = %(alarm_id)s AND state <> 'cleared' RETURNING alarm_id
"""
_ACKNOWLEDGE = """
UPDATE alarms SET state = 'acknowledged', acknowledged_at = now(), note = %(note)s
WHERE alarm_id = %(alarm_id)s AND state = 'active' RETURNING alarm_id
"""
_LAST_VALUE = "UPDATE alarms SET last_value = %s WHERE alarm_id = %s AND last_value IS DISTINCT FROM %s"
_HISTORY = "INSERT INTO alarm_history (alarm_id, event, value, note) VALUES (%s, %s, %s, %s)"
_CHANNELS = "SELECT channels FROM alarm_rules WHERE rule_id = %s"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def alarm_object(row: Mapping[str, Any]) -> dict[str, Any]:
    """The alarm as served and announced, from a row of `ALARM_COLUMNS`."""
    return {
        "alarm_id": int(row["alarm_id"]),
        "rule_id": row["rule_id"],
        "rule_name": row["rule_name"],
        "metric": row["metric"],
        "sensor_id": row["sensor_id"],
        "city": row["city"],
        "district": row["district"],
        "severity": row["severity"],
        "state": row["state"],
        "raised_at": _iso(row["raised_at"]),
        "value": row["value"],
        "last_value": row["last_value"],
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "note": row["note"],
        "cleared_at": _iso(row["cleared_at"]),
    }


@dataclass(frozen=True, slots=True)
class RaiseRequest:
    """A (rule, sensor) pair whose condition holds, with the value that makes it so."""

    rule_id: str
    severity: str
    channels: Sequence[str]
    sensor_key: int
    value: float


def _load(conn: psycopg.Connection[Any], alarm_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT_ONE, (alarm_id,)).fetchone()
    assert row is not None
    return alarm_object(row)


def _announce(conn: psycopg.Connection[Any], event: AlarmEvent, alarm: dict[str, Any], channels: Sequence[str]) -> None:
    publish_event(conn, EventType.ALARM, {"event": event, "alarm": alarm}, city=alarm["city"])
    enqueue_deliveries(conn, event=event, alarm=alarm, channel_ids=channels)


def raise_alarm(conn: psycopg.Connection[Any], request: RaiseRequest) -> dict[str, Any] | None:
    """Open an episode for the pair unless one is open; returns the new alarm, or None when one was open."""
    row = conn.execute(
        _RAISE,
        {
            "rule_id": request.rule_id,
            "severity": request.severity,
            "sensor_key": request.sensor_key,
            "value": request.value,
        },
    ).fetchone()
    if row is None:
        return None
    conn.execute(_HISTORY, (row[0], "raised", request.value, None))
    alarm = _load(conn, row[0])
    _announce(conn, "raised", alarm, request.channels)
    return alarm


def clear_alarm(
    conn: psycopg.Connection[Any], alarm_id: int, value: float | None, channels: Sequence[str]
) -> dict[str, Any] | None:
    """Close an open episode (`value`: the value that clears it, when there is one); None when it was closed."""
    row = conn.execute(_CLEAR, {"alarm_id": alarm_id, "value": value}).fetchone()
    if row is None:
        return None
    conn.execute(_HISTORY, (alarm_id, "cleared", value, None))
    alarm = _load(conn, alarm_id)
    _announce(conn, "cleared", alarm, channels)
    return alarm


def record_last_value(conn: psycopg.Connection[Any], alarm_id: int, value: float) -> None:
    """Keep an open episode's `last_value` current (no event: only raise, acknowledge and clear are events)."""
    conn.execute(_LAST_VALUE, (value, alarm_id, value))


async def acknowledge_alarm(
    conn: psycopg.AsyncConnection[Any], alarm_id: int, note: str | None
) -> dict[str, Any] | None:
    """Acknowledge an active episode with an optional note; returns the alarm, or None when it was not active.
    Call inside a transaction."""
    cur = await conn.execute(_ACKNOWLEDGE, {"alarm_id": alarm_id, "note": note})
    if await cur.fetchone() is None:
        return None
    await conn.execute(_HISTORY, (alarm_id, "acknowledged", None, note))
    async with conn.cursor(row_factory=dict_row) as dcur:
        await dcur.execute(_SELECT_ONE, (alarm_id,))
        row = await dcur.fetchone()
    assert row is not None
    alarm = alarm_object(row)
    channels_row = await (await conn.execute(_CHANNELS, (alarm["rule_id"],))).fetchone()
    channels: list[str] = list(channels_row[0]) if channels_row else []
    await publish_event_async(conn, EventType.ALARM, {"event": "acknowledged", "alarm": alarm}, city=alarm["city"])
    await enqueue_deliveries_async(conn, event="acknowledged", alarm=alarm, channel_ids=channels)
    return alarm
