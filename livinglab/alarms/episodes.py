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

from livinglab.alarms.outbox import enqueue_deliveries_async, enqueue_many
from livinglab.events import EventType, publish_event_async, publish_events

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
SELECT r.rule_id, s.sensor_key, s.city, s.district, r.severity, 'active', now(), r.value, r.value
FROM unnest(%(rules)s::text[], %(keys)s::int[], %(severities)s::text[], %(values)s::float8[])
     AS r(rule_id, sensor_key, severity, value)
JOIN sensors s USING (sensor_key)
ORDER BY r.rule_id, r.sensor_key
ON CONFLICT (rule_id, sensor_key) WHERE state <> 'cleared' DO NOTHING
RETURNING alarm_id, rule_id, sensor_key
"""
_CLEAR = """
UPDATE alarms a SET state = 'cleared', cleared_at = now(), last_value = coalesce(c.value, a.last_value)
FROM unnest(%(ids)s::int8[], %(values)s::float8[]) AS c(alarm_id, value)
WHERE a.alarm_id = c.alarm_id AND a.state <> 'cleared' RETURNING a.alarm_id
"""
_ACKNOWLEDGE = """
UPDATE alarms SET state = 'acknowledged', acknowledged_at = now(), note = %(note)s
WHERE alarm_id = %(alarm_id)s AND state = 'active' RETURNING alarm_id
"""
_LAST_VALUES = """
UPDATE alarms a SET last_value = v.value FROM unnest(%s::int8[], %s::float8[]) AS v(alarm_id, value)
WHERE a.alarm_id = v.alarm_id AND a.last_value IS DISTINCT FROM v.value
"""
_HISTORY = "INSERT INTO alarm_history (alarm_id, event, value, note) VALUES (%s, %s, %s, %s)"
_HISTORY_MANY = """
INSERT INTO alarm_history (alarm_id, event, value)
SELECT h.alarm_id, %s, h.value FROM unnest(%s::int8[], %s::float8[]) WITH ORDINALITY AS h(alarm_id, value, n)
ORDER BY h.n
"""
_SELECT_MANY = f"SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.alarm_id = ANY(%s::int8[]) ORDER BY a.alarm_id"
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


def _load_many(conn: psycopg.Connection[Any], alarm_ids: Sequence[int]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [alarm_object(row) for row in cur.execute(_SELECT_MANY, (list(alarm_ids),)).fetchall()]


def _announce(
    conn: psycopg.Connection[Any],
    event: AlarmEvent,
    alarms: Sequence[dict[str, Any]],
    channels: Mapping[int, Sequence[str]],
) -> None:
    """Record, announce and queue `event` for each alarm (in alarm_id order): history, events, deliveries."""
    conn.execute(
        _HISTORY_MANY,
        (event, [a["alarm_id"] for a in alarms], [a["value" if event == "raised" else "last_value"] for a in alarms]),
    )
    publish_events(conn, EventType.ALARM, [({"event": event, "alarm": a}, a["city"]) for a in alarms])
    enqueue_many(conn, event=event, alarms=[(a, channels.get(a["alarm_id"], ())) for a in alarms])


def raise_alarms(conn: psycopg.Connection[Any], requests: Sequence[RaiseRequest]) -> list[dict[str, Any]]:
    """Open an episode for each pair that has none open; returns the new alarms (pairs with one open: nothing)."""
    if not requests:
        return []
    rows = conn.execute(
        _RAISE,
        {
            "rules": [r.rule_id for r in requests],
            "keys": [r.sensor_key for r in requests],
            "severities": [r.severity for r in requests],
            "values": [r.value for r in requests],
        },
    ).fetchall()
    if not rows:
        return []
    alarms = _load_many(conn, [row[0] for row in rows])
    by_pair = {(r.rule_id, r.sensor_key): r.channels for r in requests}
    channels = {alarm_id: by_pair[(rule_id, key)] for alarm_id, rule_id, key in rows}
    _announce(conn, "raised", alarms, channels)
    return alarms


def raise_alarm(conn: psycopg.Connection[Any], request: RaiseRequest) -> dict[str, Any] | None:
    """Open an episode for the pair unless one is open; returns the new alarm, or None when one was open."""
    raised = raise_alarms(conn, [request])
    return raised[0] if raised else None


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """An open episode whose condition no longer holds (`value`: the value that clears it, None: no value)."""

    alarm_id: int
    value: float | None
    channels: Sequence[str]


def clear_alarms(conn: psycopg.Connection[Any], requests: Sequence[ClearRequest]) -> list[dict[str, Any]]:
    """Close the open episodes among `requests`; returns the alarms cleared (ones already closed: nothing)."""
    if not requests:
        return []
    rows = conn.execute(
        _CLEAR, {"ids": [r.alarm_id for r in requests], "values": [r.value for r in requests]}
    ).fetchall()
    if not rows:
        return []
    alarms = _load_many(conn, [row[0] for row in rows])
    _announce(conn, "cleared", alarms, {r.alarm_id: r.channels for r in requests})
    return alarms


def clear_alarm(
    conn: psycopg.Connection[Any], alarm_id: int, value: float | None, channels: Sequence[str]
) -> dict[str, Any] | None:
    """Close an open episode (`value`: the value that clears it, when there is one); None when it was closed."""
    cleared = clear_alarms(conn, [ClearRequest(alarm_id, value, channels)])
    return cleared[0] if cleared else None


def record_last_values(conn: psycopg.Connection[Any], values: Sequence[tuple[int, float]]) -> None:
    """Keep open episodes' `last_value` current (no event: only raise, acknowledge and clear are events)."""
    if values:
        conn.execute(_LAST_VALUES, ([a for a, _ in values], [v for _, v in values]))


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
