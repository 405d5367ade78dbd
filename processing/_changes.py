"""Storing hourly results and reporting what changed, in one statement.

An hourly table is written from a staging table: rows whose values changed are upserted, rows of the recomputed
range that no longer have data are deleted, and the statement returns (1) how many rows changed per city, (2) up to
N of them per city as change-event items built in SQL, and (3) the (city, district, hour) periods whose service
levels the changes affect (completed hours only: a service period is tallied once its hour is over). Rows labelled
more than an hour ahead (index labels a reading will reach later) are not announced: they are announced when their
label becomes current (`processing.rounds.tally_round`).

`publish_changes` turns the changes of one kind into one change event per city (see `livinglab.events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from livinglab.events import EventType, items_payload, publish_event

#: ISO 8601 UTC with `Z`, as every time in an event payload.
ISO_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

_SUMMARY = """
WITH upserted AS ({upsert} RETURNING {returning}),
deleted AS ({delete} RETURNING {returning}),
changed AS (SELECT * FROM upserted UNION ALL SELECT * FROM deleted)
SELECT
    (SELECT coalesce(json_object_agg(n.city, n.total), '{{}}') FROM (
        SELECT s.city, count(*) AS total FROM changed c JOIN sensors s USING (sensor_key)
        WHERE c.{label} <= now() + interval '1 hour' GROUP BY s.city) n),
    (SELECT coalesce(json_agg(json_build_array(x.city, x.item) ORDER BY x.city, x.rank), '[]') FROM (
        SELECT s.city, json_build_object({item}) AS item,
               row_number() OVER (PARTITION BY s.city ORDER BY c.{label} DESC, s.sensor_id) AS rank
        FROM changed c JOIN sensors s USING (sensor_key)
        WHERE c.{label} <= now() + interval '1 hour') x
     WHERE x.rank <= %(items)s),
    (SELECT coalesce(json_agg(json_build_array(p.city, p.district, p.epoch_s)), '[]') FROM (
        SELECT DISTINCT s.city, s.district, extract(epoch FROM {period})::bigint AS epoch_s
        FROM changed c JOIN sensors s USING (sensor_key)
        WHERE {period} + interval '1 hour' <= now()) p)
"""


def upsert_changed(table: str, keys: Sequence[str], values: Sequence[str], select: str) -> str:
    """`INSERT INTO table AS t (keys, values) <select> ON CONFLICT (keys) DO UPDATE` that rewrites a row only when
    one of its values changed (and stamps `computed_at`), so unchanged rows cost no write and are not reported.

    Names are the code's own identifiers, never input. `select` yields the columns in (keys, values) order.
    """
    columns = ", ".join((*keys, *values))
    assignments = ", ".join(f"{v} = excluded.{v}" for v in values)
    old = ", ".join(f"t.{v}" for v in values)
    new = ", ".join(f"excluded.{v}" for v in values)
    return (
        f"INSERT INTO {table} AS t ({columns}) {select}"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}, computed_at = now()"
        f" WHERE ({old}) IS DISTINCT FROM ({new})"
    )


@dataclass(slots=True)
class Changes:
    """What a store step changed, per city: how many rows (`total`) and up to N of them as event items (`items`);
    and the service periods to recount."""

    total: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    periods: set[tuple[str, str, datetime]] = field(default_factory=set)

    @classmethod
    def of_items(cls, cities_and_items: Iterable[tuple[str, dict[str, Any]]], *, limit: int) -> Changes:
        """Changes of these (city, item) pairs: every pair counts, at most `limit` items per city are kept."""
        changes = cls()
        for city, item in cities_and_items:
            changes.total[city] = changes.total.get(city, 0) + 1
            kept = changes.items.setdefault(city, [])
            if len(kept) < limit:
                kept.append(item)
        return changes


def publish_changes(conn: psycopg.Connection[Any], type_: EventType, changes: Changes, **extra: Any) -> None:
    """One change event per city with changes (payload: `extra`, the city's items, `truncated`)."""
    for city in sorted(changes.total):
        total = changes.total[city]
        if total:
            items = changes.items.get(city, [])
            payload = items_payload(items, **extra)
            payload["truncated"] = total > len(payload["items"])
            publish_event(conn, type_, payload, city=city)


def store_and_summarize(
    conn: psycopg.Connection[Any],
    *,
    upsert: sql.Composable,
    delete: sql.Composable,
    label: str,
    values: Sequence[str],
    period: sql.Composable,
    params: dict[str, Any],
    items: int,
) -> Changes:
    """Run `upsert` and `delete` (each without RETURNING) and summarize the rows they changed.

    `label` names the time column of the table, `values` the columns a change-event item carries after its
    `sensor_id` and label (in that order); `period` is the service hour a changed row `c` counts in.
    """
    returning = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in ("sensor_key", label, *values))
    item = sql.SQL(", ").join(
        [
            sql.SQL("'sensor_id', s.sensor_id"),
            sql.SQL("{}, " + ISO_UTC.format("c.{}")).format(sql.Literal(label), sql.Identifier(label)),
            *(sql.SQL("{}, c.{}").format(sql.Literal(v), sql.Identifier(v)) for v in values),
        ]
    )
    query = sql.SQL(_SUMMARY).format(
        upsert=upsert,
        delete=delete,
        returning=returning,
        label=sql.Identifier(label),
        item=item,
        period=period,
    )
    row = conn.execute(query, {**params, "items": items}).fetchone()
    assert row is not None
    totals, city_items, periods = row
    changes = Changes(total={city: int(n) for city, n in totals.items()})
    for city, city_item in city_items:
        changes.items.setdefault(city, []).append(city_item)
    changes.periods = {(city, district, datetime.fromtimestamp(epoch_s, UTC)) for city, district, epoch_s in periods}
    return changes
