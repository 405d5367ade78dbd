"""Change events: how the processor tells live clients (the API's SSE stream) what changed.

A processor writes one event per kind of result and city per round into the `events` table, in the transaction
that stores the results, and NOTIFYs `livinglab_events`. Each event names its city (the `city` column, not part of
the payload), so a reader limited to some cities gets only their events. The API LISTENs, reads events after the
last id it sent, and forwards each as one SSE message whose id is the event id, so a client reconnecting with
`Last-Event-ID` resumes exactly where it left off.

Event types and payloads (JSON):

- `aggregates`: `{"window": "1m"|"1h"|"1d", "items": [{"sensor_id", "quantity", "window_start", "count", "mean",
  "min", "max", "p50", "p95", "completeness"}, ...], "truncated": bool}`
- `ispu`: `{"items": [{"sensor_id", "window_end", "ispu", "category", "critical_parameter"}, ...], "truncated": bool}`
- `aqi`: `{"items": [{"sensor_id", "hour", "aqi", "category", "dominant_pollutant"}, ...], "truncated": bool}`
- `traffic`: `{"items": [{"sensor_id", "hour", "degree_of_saturation", "los", "los_target"}, ...], "truncated": bool}`
- `service_levels`: `{"items": [{"city", "district", "service", "period_start", "numerator", "denominator"}, ...],
  "truncated": bool}` (hourly tallies; achieved = numerator / denominator; both null when the tally was removed)

Items are the rows that changed in the event's city, newest label first. An index row whose data disappeared
appears with its value null. ISPU and AQI values are announced when they change and again, for every station, when
their label becomes current (the hour they end is over); traffic rows when they change.

Times are ISO 8601 UTC strings with `Z`. `items` holds at most `MAX_ITEMS` entries; when more changed, `truncated`
is true and clients refetch from the HTTP API.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from livinglab.storage._db import CHANNEL_EVENTS

MAX_ITEMS = 500


class EventType(enum.StrEnum):
    AGGREGATES = "aggregates"
    ISPU = "ispu"
    AQI = "aqi"
    TRAFFIC = "traffic"
    SERVICE_LEVELS = "service_levels"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    created_at: datetime
    type: EventType
    payload: Mapping[str, Any]
    city: str | None = None


def publish_event(
    conn: psycopg.Connection[Any], type_: EventType, payload: Mapping[str, Any], *, city: str | None
) -> int:
    """Insert an event of `city` (None: of no one city) and NOTIFY its id. Call inside the transaction that stores
    the results it announces."""
    row = conn.execute(
        "INSERT INTO events (type, city, payload) VALUES (%s, %s, %s::jsonb) RETURNING id",
        (type_.value, city, json.dumps(payload, separators=(",", ":"))),
    ).fetchone()
    assert row is not None
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_EVENTS, str(row[0])))
    return int(row[0])


def items_payload(items: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """A payload with at most MAX_ITEMS items and the `truncated` flag."""
    return {**extra, "items": list(items[:MAX_ITEMS]), "truncated": len(items) > MAX_ITEMS}
