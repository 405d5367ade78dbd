"""Rules in the database: their columns, the checks that need the registry, and the writes shared by the API and the
YAML import.

A rule scoped to a sensor takes the sensor's city (so a key limited to cities sees the rule exactly when it sees the
sensor); its metric must apply to the sensor's kind. Every write bumps `revision`, which makes the evaluator go
through the rule against every sensor of its scope once (see `livinglab.alarms.evaluator`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from livinglab.alarms.rules import Metric, RuleBase, RuleError, RuleSpec

#: The columns of a rule as clients see them, in order.
RULE_FIELDS = (
    "rule_id",
    "name",
    "metric",
    "op",
    "threshold",
    "clear_threshold",
    "for_s",
    "severity",
    "channels",
    "enabled",
    "sensor_id",
    "district",
    "city",
)
_WRITTEN = RULE_FIELDS[1:]

INSERT_RULE = (
    f"INSERT INTO alarm_rules ({', '.join(RULE_FIELDS)}) VALUES ({', '.join(f'%({c})s' for c in RULE_FIELDS)})"
    " RETURNING *"
)
UPDATE_RULE = (
    f"UPDATE alarm_rules SET {', '.join(f'{c} = %({c})s' for c in _WRITTEN)}, updated_at = now(),"
    " revision = revision + 1 WHERE rule_id = %(rule_id)s RETURNING *"
)
UPSERT_RULE = (
    f"INSERT INTO alarm_rules ({', '.join(RULE_FIELDS)}) VALUES ({', '.join(f'%({c})s' for c in RULE_FIELDS)})"
    f" ON CONFLICT (rule_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _WRITTEN)},"
    " updated_at = now(), revision = alarm_rules.revision + 1 RETURNING *"
)
INSERT_MISSING_RULE = (
    f"INSERT INTO alarm_rules ({', '.join(RULE_FIELDS)}) VALUES ({', '.join(f'%({c})s' for c in RULE_FIELDS)})"
    " ON CONFLICT (rule_id) DO NOTHING RETURNING *"
)
SELECT_SENSOR = "SELECT sensor_id, city, district, kind FROM sensors WHERE sensor_id = %s"


def new_rule_id() -> str:
    """A server-made rule id (the sensor id pattern)."""
    return f"rule-{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class SensorScope:
    """What a rule needs to know of the sensor it is scoped to."""

    sensor_id: str
    city: str
    district: str
    kind: str


def rule_values(rule_id: str, spec: RuleBase, sensor: SensorScope | None) -> dict[str, Any]:
    """The column values of a rule, checked against its scope's sensor (`sensor`: the visible sensor named by
    `spec.sensor_id`, None when there is none). Raises RuleError for a rule the registry makes invalid."""
    metric = Metric.parse(spec.metric)
    city, district = spec.city, spec.district
    if spec.sensor_id is not None:
        if sensor is None:
            raise RuleError("sensor_id", f"no sensor {spec.sensor_id!r}")
        if not metric.applies_to(sensor.kind):
            raise RuleError(
                "metric",
                f"metric {spec.metric!r} applies to {metric.kind} sensors; {sensor.sensor_id!r} is {sensor.kind}",
            )
        if city is not None and city != sensor.city:
            raise RuleError("city", f"sensor {sensor.sensor_id!r} is in city {sensor.city!r}, not {city!r}")
        if district is not None and district != sensor.district:
            raise RuleError(
                "district", f"sensor {sensor.sensor_id!r} is in district {sensor.district!r}, not {district!r}"
            )
        city = sensor.city
    values = {name: getattr(spec, name) for name in _WRITTEN}
    values.update(rule_id=rule_id, city=city, district=district, channels=list(spec.channels))
    return values


def rule_public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A rule as clients see it (its fields, `created_at`, `updated_at`)."""
    data = {name: row[name] for name in RULE_FIELDS}
    data["channels"] = list(row["channels"])
    data["created_at"] = _as_utc(row["created_at"])
    data["updated_at"] = _as_utc(row["updated_at"])
    return data


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def sensor_scope(row: Mapping[str, Any] | Sequence[Any] | None) -> SensorScope | None:
    if row is None:
        return None
    if isinstance(row, Mapping):
        return SensorScope(row["sensor_id"], row["city"], row["district"], row["kind"])
    return SensorScope(*row)


def import_rules(
    conn: psycopg.Connection[Any], specs: Sequence[RuleSpec], *, replace: bool = True
) -> list[dict[str, Any]]:
    """Create or replace every rule of `specs` (by `rule_id`; server-made when absent) in one transaction: all of
    them, or (on the first RuleError, which names the rule) none. With `replace` False, rules that exist are left
    as they are (and not returned)."""
    seen: set[str] = set()
    stored = []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for index, spec in enumerate(specs):
            rule_id = spec.rule_id or new_rule_id()
            if rule_id in seen:
                raise RuleError("rule_id", f"rule {index + 1}: rule_id {rule_id!r} appears twice")
            seen.add(rule_id)
            sensor = None
            if spec.sensor_id is not None:
                sensor = sensor_scope(conn.execute(SELECT_SENSOR, (spec.sensor_id,)).fetchone())
            try:
                values = rule_values(rule_id, spec, sensor)
            except RuleError as exc:
                raise RuleError(exc.field, f"rule {index + 1} ({rule_id}): {exc.message}") from None
            row = cur.execute(UPSERT_RULE if replace else INSERT_MISSING_RULE, values).fetchone()
            if row is not None:
                stored.append(rule_public(row))
    return stored
