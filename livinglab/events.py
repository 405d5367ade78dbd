"""Change events: how processors tell live clients (the API's SSE stream, alarm evaluation) what changed.

A processor writes one event per kind of result and city per round into the `events` table, in the transaction
that stores the results, and NOTIFYs `livinglab_events`. Each event names its city (the `city` column, not part of
the payload), so a reader limited to some cities gets only their events. Readers follow the feed with a cursor, the
id of the last event they handled: `read_events` (or `read_events_async`) returns the events after it, in order.
The API forwards each as one SSE message whose id is the event id, so a client reconnecting with `Last-Event-ID`
resumes exactly where it left off.

The feed in commit order
------------------------
A cursor is only safe if no event with a smaller id can still appear after the reader has seen a bigger one. Ids
taken from a sequence at INSERT break that: two processors' transactions take ids 12 and 14, the one with 14
commits first, a reader moves its cursor to 14, and 12 commits behind it and is never read. Choices:

- read by a snapshot horizon (deliver only events of transactions older than the oldest running one): the reader
  cannot see which ids a running transaction holds, so it must hold back everything newer than the oldest
  transaction in the database (a long report stalls the live stream), and ids alone no longer order the feed;
- serialize the writers (LOCK TABLE, SERIALIZABLE, or an advisory lock taken at INSERT): correct, but the lock is
  held for the rest of the writer's transaction, over client round trips, so processors wait on each other's
  whole rounds, and on a stalled one's until its deadline;
- number the events at COMMIT: chosen. Migration 0051 adds a deferred constraint trigger on `events`: when the
  writing transaction commits, the trigger takes a transaction-level advisory lock (the feed lock) and gives each of
  the transaction's events a new id from the sequence, in insertion order. The lock is held from there to the end
  of the commit, with no round trip to the client in between, so writers queue only for each other's commits.

Why it is correct. PostgreSQL releases a transaction's locks only after its commit is visible to new snapshots. Take
an event with final id i, numbered by transaction T while it held the feed lock. An event with a final id below i
was numbered by a transaction that held the lock before T, so that transaction had committed (and was visible) or
aborted before T took the lock, hence before any snapshot can see i. So every snapshot that sees id i also sees
every event that will ever be committed with a smaller id: a reader that reads `id > cursor ORDER BY id` and moves
its cursor to the last id read never passes an event still to come. Aborted transactions leave gaps, which a reader
simply never sees. `Last-Event-ID: i` therefore replays exactly the events after i, each once, in order; ids
increase along the feed, but not by one.

Cost: one UPDATE of each event row at commit (a round writes a handful), and commits that write events follow each
other. The id `publish_event`'s INSERT sees is provisional, so it returns nothing; NOTIFY carries the event type
only (notifications are delivered at commit, after the numbering).

Event types and payloads (JSON):

- `aggregates`: `{"window": "1m"|"1h"|"1d", "items": [{"sensor_id", "quantity", "window_start", "count", "mean",
  "min", "max", "p50", "p95", "completeness"}, ...], "truncated": bool}`
- `ispu`: `{"items": [{"sensor_id", "window_end", "ispu", "category", "critical_parameter"}, ...], "truncated": bool}`
- `aqi`: `{"items": [{"sensor_id", "hour", "aqi", "category", "dominant_pollutant"}, ...], "truncated": bool}`
- `traffic`: `{"items": [{"sensor_id", "hour", "degree_of_saturation", "los", "los_target"}, ...], "truncated": bool}`
- `service_levels`: `{"items": [{"city", "district", "service", "period_start", "numerator", "denominator"}, ...],
  "truncated": bool}` (hourly tallies; achieved = numerator / denominator; both null when the tally was removed)
- `alarm`: `{"event": "raised"|"acknowledged"|"cleared", "alarm": {...}}` (CONTRACT.md section 5; one event per
  change of an alarm, written by `livinglab.alarms` in the transaction of the change)

Items are the rows that changed in the event's city, newest label first. An index row whose data disappeared
appears with its value null. ISPU and AQI values are announced when they change and again, for every station, when
their label becomes current (the hour they end is over); traffic rows when they change.

Times are ISO 8601 UTC strings with `Z`. `items` holds at most `MAX_ITEMS` entries; when more changed, `truncated`
is true and clients refetch from the HTTP API.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from livinglab.storage._db import CHANNEL_EVENTS

MAX_ITEMS = 500
#: Events `read_events` returns at most per call, by default.
READ_BATCH = 500


class EventType(enum.StrEnum):
    AGGREGATES = "aggregates"
    ISPU = "ispu"
    AQI = "aqi"
    TRAFFIC = "traffic"
    SERVICE_LEVELS = "service_levels"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Event:
    """One change event as stored. `data` is its payload as compact JSON text (what SSE sends as is)."""

    id: int
    created_at: datetime
    type: str
    city: str | None
    data: str

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, parsed."""
        payload: dict[str, Any] = json.loads(self.data)
        return payload


def publish_event(
    conn: psycopg.Connection[Any], type_: EventType, payload: Mapping[str, Any], *, city: str | None
) -> None:
    """Insert an event of `city` (None: of no one city) and NOTIFY its type. Call inside the transaction that stores
    the results it announces; the event gets its id when that transaction commits (see the module docstring)."""
    conn.execute(
        "INSERT INTO events (type, city, payload) VALUES (%s, %s, %s::jsonb)",
        (type_.value, city, json.dumps(payload, separators=(",", ":"))),
    )
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_EVENTS, type_.value))


def publish_events(
    conn: psycopg.Connection[Any], type_: EventType, events: Sequence[tuple[Mapping[str, Any], str | None]]
) -> None:
    """`publish_event` for many events of one type at once, in order: (payload, city) pairs; one NOTIFY."""
    if not events:
        return
    conn.execute(
        "INSERT INTO events (type, city, payload)"
        " SELECT %s, e.city, e.payload::jsonb"
        " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS e(city, payload, n) ORDER BY e.n",
        (type_.value, [city for _, city in events], [json.dumps(p, separators=(",", ":")) for p, _ in events]),
    )
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_EVENTS, type_.value))


async def publish_event_async(
    conn: psycopg.AsyncConnection[Any], type_: EventType, payload: Mapping[str, Any], *, city: str | None
) -> None:
    """`publish_event` for asyncio code."""
    await conn.execute(
        "INSERT INTO events (type, city, payload) VALUES (%s, %s, %s::jsonb)",
        (type_.value, city, json.dumps(payload, separators=(",", ":"))),
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_EVENTS, type_.value))


def items_payload(items: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """A payload with at most MAX_ITEMS items and the `truncated` flag."""
    return {**extra, "items": list(items[:MAX_ITEMS]), "truncated": len(items) > MAX_ITEMS}


# -- reading the feed ------------------------------------------------------------------------------------------------

_READ = """
SELECT id, created_at, type, city, payload::text FROM events
WHERE id > %(after)s AND (%(until)s::int8 IS NULL OR id <= %(until)s::int8)
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(cities)s::text[] IS NULL OR city = ANY(%(cities)s::text[]))
ORDER BY id
LIMIT %(limit)s
"""
_LATEST = "SELECT coalesce(max(id), 0) FROM events"


def _read_params(
    after: int, types: Collection[str] | None, cities: Collection[str] | None, limit: int, until: int | None
) -> dict[str, Any]:
    return {
        "after": after,
        "until": until,
        "types": sorted(types) if types is not None else None,
        "cities": sorted(cities) if cities is not None else None,
        "limit": limit,
    }


def _events(rows: list[tuple[Any, ...]]) -> list[Event]:
    return [Event(int(i), created_at, type_, city, data) for i, created_at, type_, city, data in rows]


def read_events(
    conn: psycopg.Connection[Any],
    *,
    after: int,
    types: Collection[str] | None = None,
    cities: Collection[str] | None = None,
    limit: int = READ_BATCH,
    until: int | None = None,
) -> list[Event]:
    """The events after the cursor `after`, in feed order: at most `limit`, only of `types` and `cities` when given
    (an event of no city is in no list of cities), none past `until` when given.

    Move the cursor to the last id returned; an empty or short list means the reader is at the end for now (wait
    for a NOTIFY on `livinglab_events`, or poll). Run it outside a transaction, or at the start of one: a snapshot
    taken earlier hides events committed since, which the next call returns.
    """
    return _events(conn.execute(_READ, _read_params(after, types, cities, limit, until)).fetchall())


async def read_events_async(
    conn: psycopg.AsyncConnection[Any],
    *,
    after: int,
    types: Collection[str] | None = None,
    cities: Collection[str] | None = None,
    limit: int = READ_BATCH,
    until: int | None = None,
) -> list[Event]:
    """`read_events` for asyncio code."""
    cur = await conn.execute(_READ, _read_params(after, types, cities, limit, until))
    return _events(await cur.fetchall())


def latest_event_id(conn: psycopg.Connection[Any]) -> int:
    """The id of the last event committed (0 when there is none): the cursor of a reader that starts now."""
    row = conn.execute(_LATEST).fetchone()
    return int(row[0]) if row else 0


async def latest_event_id_async(conn: psycopg.AsyncConnection[Any]) -> int:
    """`latest_event_id` for asyncio code."""
    row = await (await conn.execute(_LATEST)).fetchone()
    return int(row[0]) if row else 0
