"""Alarm evaluation: the change feed and a clock in, alarm episodes out.

What drives it
--------------
- The processors' change events (`livinglab.events`), followed with one durable cursor (`alarm_evaluator.cursor`):
  `ispu`, `aqi`, `traffic` and `aggregates` (1-minute windows) events name the sensors whose values changed, and
  `service_levels` events the (city, district) hours whose completeness was tallied. Only the rules of the changed
  metric, and only the named sensors, are evaluated; an event that was truncated (more changes than it carries)
  widens to every sensor of its city for that metric. So the work follows the changes, not rules x sensors.
- A rule written or changed (its `revision` above `evaluated_revision`) is evaluated once against every sensor of
  its scope, so a rule made while a value already meets it raises at once; a disabled rule's open alarms clear.
- A clock for `silence_s` (every `silence_check_s`): one query over the sensors in the scope of silence rules.
- The hour: ISPU and AQI values are computed ahead of their label and served the moment their hour ends, with no
  change event then, so when an hour has ended the rules on `ispu` and `aqi` go through their scope once.

One cycle runs in one transaction that holds the cursor row (`FOR UPDATE SKIP LOCKED`): it reads the events after
the cursor, raises and clears alarms (`livinglab.alarms.episodes`, each with its `alarm` event and its queued
notifications) and moves the cursor. An evaluator that finds the row locked stands by; a crash rolls the cycle back
whole, and the next evaluator redoes it. Any number of evaluators (one per processor) can therefore run: each event
is evaluated once, and the partial unique index on open episodes guards the raise besides.

Semantics (CONTRACT.md section 5)
---------------------------------
A rule sees, per sensor, the newest value served (the newest window labelled at or before now). With `for_s`, the
newest `windows_needed(for_s, window)` windows must be consecutive (no window missing) and each meet the condition.
An open episode clears as soon as the newest value no longer meets the condition with `clear_threshold` (clearing
is not delayed) and otherwise tracks `last_value`. A sensor with no newest value (no data, or an index that is not
valid) leaves its rules as they are. Values are re-read from the tables on every evaluation, so a late reading that
changes the newest value raises or clears through the event its recomputation publishes. For `silence_s`, `for_s`
adds to the threshold (the silence has then exceeded the threshold for `for_s` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from livinglab.alarms.episodes import (
    ClearRequest,
    RaiseRequest,
    clear_alarms,
    raise_alarms,
    record_last_values,
)
from livinglab.alarms.rules import MEAN_1M_PREFIX, Metric, Source, meets, windows_needed
from livinglab.domain import QUANTITIES
from livinglab.events import EventType, read_events
from livinglab.resilience import Backoff, DatabasePolicy, is_transient
from livinglab.storage import connect, describe_error
from livinglab.storage._db import CHANNEL_EVENTS

log = logging.getLogger(__name__)

#: The event types that change a metric's values.
WATCHED_EVENTS = frozenset(
    {EventType.ISPU, EventType.AQI, EventType.TRAFFIC, EventType.AGGREGATES, EventType.SERVICE_LEVELS}
)
_EVENT_SOURCES: dict[str, tuple[Source, ...]] = {
    EventType.ISPU: (Source.ISPU,),
    EventType.AQI: (Source.AQI,),
    EventType.TRAFFIC: (Source.DEGREE_OF_SATURATION, Source.LOS_TARGET_MISSED),
    EventType.AGGREGATES: (Source.MEAN_1M,),
    EventType.SERVICE_LEVELS: (Source.COMPLETENESS_1H,),
}

_LOCK_CURSOR = """
SELECT cursor, extract(epoch FROM now() - silence_checked_at),
       date_trunc('hour', now()) > coalesce(labels_checked_at, '-infinity')
FROM alarm_evaluator FOR UPDATE SKIP LOCKED
"""
_MOVE_CURSOR = "UPDATE alarm_evaluator SET cursor = %s, updated_at = now()"
_SILENCE_CHECKED = "UPDATE alarm_evaluator SET silence_checked_at = now()"
_LABELS_CHECKED = "UPDATE alarm_evaluator SET labels_checked_at = now()"
#: Metrics whose newest value changes when an hour ends, without a change event (labels computed ahead).
_LABELLED_AHEAD = (Source.ISPU, Source.AQI)
_RULES = """
SELECT rule_id, metric, op, threshold, clear_threshold, for_s, severity, channels, enabled, sensor_id, district, city,
       revision, evaluated_revision
FROM alarm_rules WHERE enabled OR evaluated_revision < revision
"""
_MARK_EVALUATED = "UPDATE alarm_rules SET evaluated_revision = %s WHERE rule_id = %s AND evaluated_revision < %s"
_SENSOR_COLUMNS = "sensor_key, sensor_id, city, district, kind"
_OPEN = """
SELECT alarm_id, rule_id, sensor_key FROM alarms
WHERE state <> 'cleared' AND rule_id = ANY(%s::text[]) AND sensor_key = ANY(%s::int[])
"""
_OPEN_OF_RULE = "SELECT alarm_id, sensor_key FROM alarms WHERE state <> 'cleared' AND rule_id = %s"

# The newest `n` values per sensor, newest first: (sensor_key, label in epoch seconds, value or NULL).
_SERIES: dict[Source, str] = {
    Source.ISPU: "SELECT window_end AS label, ispu::float8 AS value FROM ispu_hourly"
    " WHERE sensor_key = k.key AND window_end <= now() ORDER BY window_end DESC",
    Source.AQI: "SELECT hour AS label, aqi::float8 AS value FROM aqi_hourly"
    " WHERE sensor_key = k.key AND hour <= now() ORDER BY hour DESC",
    Source.DEGREE_OF_SATURATION: "SELECT hour AS label, degree_of_saturation AS value FROM traffic_hourly"
    " WHERE sensor_key = k.key AND hour <= now() ORDER BY hour DESC",
    Source.LOS_TARGET_MISSED: "SELECT hour AS label, CASE WHEN los_met THEN 0.0 ELSE 1.0 END AS value"
    " FROM traffic_hourly WHERE sensor_key = k.key AND hour <= now() ORDER BY hour DESC",
    Source.MEAN_1M: "SELECT window_start AS label, mean AS value FROM agg_1m"
    " WHERE sensor_key = k.key AND quantity = %(quantity)s AND window_start <= now() ORDER BY window_start DESC",
    Source.COMPLETENESS_1H: "SELECT hour AS label, CASE WHEN expected > 0 THEN received / expected END AS value"
    " FROM completeness_hourly WHERE sensor_key = k.key AND hour + interval '1 hour' <= now() ORDER BY hour DESC",
}
_SERIES_SQL = """
SELECT k.key, extract(epoch FROM x.label)::bigint, x.value
FROM unnest(%(keys)s::int[]) AS k(key) CROSS JOIN LATERAL ({inner} LIMIT %(n)s) x
"""
# Seconds since the sensor's last accepted reading was received (readings are at most days late, so the recent
# counters hold it; an older one is looked up in all of them), else since its registration.
_SILENCE = """
SELECT s.sensor_key, extract(epoch FROM now() - coalesce(
    (SELECT max(c.last_seen) FROM ingest_counters c
     WHERE c.sensor_key = s.sensor_key AND c.accepted > 0 AND c.hour > now() - interval '8 days'),
    (SELECT max(c.last_seen) FROM ingest_counters c WHERE c.sensor_key = s.sensor_key AND c.accepted > 0),
    s.created_at))::float8
FROM sensors s WHERE s.sensor_key = ANY(%s::int[])
"""


@dataclass(frozen=True, slots=True)
class Sensor:
    key: int
    sensor_id: str
    city: str
    district: str
    kind: str


@dataclass(frozen=True, slots=True)
class StoredRule:
    """An enabled rule (or one whose change is still to be evaluated) as the evaluator reads it."""

    rule_id: str
    metric: Metric
    op: str
    threshold: float
    clear_threshold: float
    for_s: int
    severity: str
    channels: tuple[str, ...]
    enabled: bool
    sensor_id: str | None
    district: str | None
    city: str | None
    revision: int
    evaluated_revision: int

    def covers(self, sensor: Sensor) -> bool:
        """Whether the sensor is in the rule's scope and the metric applies to it."""
        return (
            self.metric.applies_to(sensor.kind)
            and (self.sensor_id is None or self.sensor_id == sensor.sensor_id)
            and (self.city is None or self.city == sensor.city)
            and (self.district is None or self.district == sensor.district)
        )

    @property
    def windows(self) -> int:
        return windows_needed(self.for_s, self.metric.window_s)

    def raises(self, series: Sequence[tuple[int, float | None]]) -> bool:
        """Whether the newest windows of `series` (newest first) raise an alarm."""
        if self.metric.source is Source.SILENCE_S:
            value = series[0][1] if series else None
            if value is None:
                return False
            extra = self.for_s if self.op in (">", ">=") else 0
            return meets(self.op, value, self.threshold + extra)
        needed = self.windows
        window = series[:needed]
        if len(window) < needed:
            return False
        step = self.metric.window_s
        for i, (label, value) in enumerate(window):
            if value is None or not meets(self.op, value, self.threshold):
                return False
            if i and window[i - 1][0] - label != step:
                return False
        return True

    def clears(self, value: float) -> bool:
        return not meets(self.op, value, self.clear_threshold)


def _stored_rule(row: Sequence[Any]) -> StoredRule:
    (rule_id, metric, op, threshold, clear_threshold, for_s, severity, channels, enabled, sensor_id, district, city,
     revision, evaluated_revision) = row  # fmt: skip
    return StoredRule(
        rule_id,
        Metric.parse(metric),
        op,
        float(threshold),
        float(clear_threshold),
        int(for_s),
        severity,
        tuple(channels),
        bool(enabled),
        sensor_id,
        district,
        city,
        int(revision),
        int(evaluated_revision),
    )


@dataclass(slots=True)
class Outcome:
    """What one cycle did."""

    events: int = 0
    evaluated: int = 0
    raised: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Targets:
    """Sensors to evaluate, per metric (for `mean_1m`, per quantity), as ids and as whole cities or districts."""

    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    cities: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    districts: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))

    def add_event(self, type_: str, city: str | None, payload: Mapping[str, Any]) -> None:
        items = payload.get("items") or []
        if type_ == EventType.AGGREGATES:
            if payload.get("window") != "1m":
                return
            if payload.get("truncated") and city is not None:
                for name in QUANTITIES:
                    self.cities[MEAN_1M_PREFIX + name].add(city)
            for item in items:
                self.ids[MEAN_1M_PREFIX + str(item.get("quantity"))].add(str(item.get("sensor_id")))
            return
        for source in _EVENT_SOURCES.get(type_, ()):
            if payload.get("truncated") and city is not None:
                self.cities[source.value].add(city)
            for item in items:
                if type_ != EventType.SERVICE_LEVELS:
                    self.ids[source.value].add(str(item.get("sensor_id")))
                elif item.get("service") == "data":
                    self.districts[source.value].add((str(item.get("city")), str(item.get("district"))))

    def metrics(self) -> set[str]:
        return set(self.ids) | set(self.cities) | set(self.districts)


def _load_sensors(
    conn: psycopg.Connection[Any], ids: Iterable[str], cities: Iterable[str], districts: Iterable[tuple[str, str]]
) -> list[Sensor]:
    ids, cities, districts = sorted(ids), sorted(cities), sorted(districts)
    if not (ids or cities or districts):
        return []
    rows = conn.execute(
        f"SELECT {_SENSOR_COLUMNS} FROM sensors"
        " WHERE sensor_id = ANY(%(ids)s::text[]) OR city = ANY(%(cities)s::text[])"
        " OR (city, district) IN (SELECT * FROM unnest(%(dcities)s::text[], %(ddistricts)s::text[]))",
        {
            "ids": ids,
            "cities": cities,
            "dcities": [c for c, _ in districts],
            "ddistricts": [d for _, d in districts],
        },
    ).fetchall()
    return [Sensor(*row) for row in rows]


def _scope_sensors(conn: psycopg.Connection[Any], rule: StoredRule) -> list[Sensor]:
    rows = conn.execute(
        f"SELECT {_SENSOR_COLUMNS} FROM sensors WHERE (%(sensor_id)s::text IS NULL OR sensor_id = %(sensor_id)s)"
        " AND (%(city)s::text IS NULL OR city = %(city)s) AND (%(district)s::text IS NULL OR district = %(district)s)"
        " AND (%(kind)s::text IS NULL OR kind = %(kind)s)",
        {
            "sensor_id": rule.sensor_id,
            "city": rule.city,
            "district": rule.district,
            "kind": rule.metric.kind.value if rule.metric.kind else None,
        },
    ).fetchall()
    return [Sensor(*row) for row in rows]


def _series(
    conn: psycopg.Connection[Any], metric: Metric, keys: Sequence[int], n: int
) -> dict[int, list[tuple[int, float | None]]]:
    """The newest `n` values of `metric` for each sensor of `keys`, newest first."""
    series: dict[int, list[tuple[int, float | None]]] = {k: [] for k in keys}
    if not keys:
        return series
    if metric.source is Source.SILENCE_S:
        for key, silence_s in conn.execute(_SILENCE, (list(keys),)).fetchall():
            series[key] = [(0, float(silence_s))]
        return series
    params: dict[str, Any] = {"keys": list(keys), "n": n}
    if metric.quantity is not None:
        params["quantity"] = QUANTITIES[metric.quantity].code
    query = _SERIES_SQL.format(inner=_SERIES[metric.source])
    for key, label, value in conn.execute(query, params).fetchall():
        series[key].append((int(label), None if value is None else float(value)))
    return series


def _evaluate(conn: psycopg.Connection[Any], pairs: Sequence[tuple[StoredRule, Sensor]], outcome: Outcome) -> None:
    """Evaluate (rule, sensor) pairs: raise, clear, or track the last value. Pairs of one metric are read together;
    the raises, clears and last values of all of them are written in one statement each."""
    by_metric: dict[str, list[tuple[StoredRule, Sensor]]] = defaultdict(list)
    for rule, sensor in pairs:
        by_metric[rule.metric.name].append((rule, sensor))
    raises: list[RaiseRequest] = []
    clears: list[ClearRequest] = []
    last_values: list[tuple[int, float]] = []
    for group in by_metric.values():
        metric = group[0][0].metric
        keys = sorted({s.key for _, s in group})
        series = _series(conn, metric, keys, max(r.windows for r, _ in group))
        rows = conn.execute(_OPEN, (sorted({r.rule_id for r, _ in group}), keys)).fetchall()
        open_alarms = {(rule_id, key): alarm_id for alarm_id, rule_id, key in rows}
        for rule, sensor in group:
            outcome.evaluated += 1
            values = series.get(sensor.key, [])
            newest = values[0][1] if values else None
            alarm_id = open_alarms.get((rule.rule_id, sensor.key))
            if newest is None:
                continue
            if alarm_id is None:
                if rule.raises(values):
                    raises.append(RaiseRequest(rule.rule_id, rule.severity, rule.channels, sensor.key, newest))
            elif rule.clears(newest):
                clears.append(ClearRequest(alarm_id, newest, rule.channels))
            else:
                last_values.append((alarm_id, newest))
    outcome.cleared += clear_alarms(conn, clears)
    record_last_values(conn, last_values)
    outcome.raised += raise_alarms(conn, raises)


def _pairs(rules: Iterable[StoredRule], sensors: Iterable[Sensor]) -> list[tuple[StoredRule, Sensor]]:
    """The (rule, sensor) pairs where the rule covers the sensor. Rules are looked up by the narrowest part of their
    scope (sensor, district, city, none), so the cost is the pairs found, not rules x sensors."""
    index: dict[tuple[str, ...], list[StoredRule]] = defaultdict(list)
    for rule in rules:
        if rule.sensor_id is not None:
            index[("sensor", rule.sensor_id)].append(rule)
        elif rule.district is not None and rule.city is not None:
            index[("district", rule.city, rule.district)].append(rule)
        elif rule.city is not None:
            index[("city", rule.city)].append(rule)
        else:
            index[("all",)].append(rule)
    pairs = []
    for sensor in sensors:
        for key in (("sensor", sensor.sensor_id), ("district", sensor.city, sensor.district), ("city", sensor.city)):
            pairs += [(rule, sensor) for rule in index.get(key, ()) if rule.covers(sensor)]
        pairs += [(rule, sensor) for rule in index.get(("all",), ()) if rule.covers(sensor)]
    return pairs


def evaluate_cycle(
    conn: psycopg.Connection[Any], *, batch: int = 500, silence_check_s: float = 2.0, force_silence: bool = False
) -> Outcome | None:
    """One evaluation cycle in one transaction (see the module docstring). Returns None when another evaluator
    holds the cursor. Call with no transaction open."""
    outcome = Outcome()
    with conn.transaction():
        row = conn.execute(_LOCK_CURSOR).fetchone()
        if row is None:
            return None
        cursor, since_silence_s, hour_passed = int(row[0]), row[1], bool(row[2])
        rules = [_stored_rule(r) for r in conn.execute(_RULES).fetchall()]
        enabled = [r for r in rules if r.enabled]

        events = read_events(conn, after=cursor, types=WATCHED_EVENTS, limit=batch)
        outcome.events = len(events)
        targets = _Targets()
        for event in events:
            targets.add_event(event.type, event.city, event.payload)
        watched = targets.metrics() & {r.metric.name for r in enabled}
        for name in sorted(watched):
            sensors = _load_sensors(conn, targets.ids[name], targets.cities[name], targets.districts[name])
            _evaluate(conn, _pairs((r for r in enabled if r.metric.name == name), sensors), outcome)

        for rule in rules:
            if rule.evaluated_revision >= rule.revision:
                continue
            scope = _scope_sensors(conn, rule) if rule.enabled else []
            if rule.enabled and rule.metric.source is not Source.SILENCE_S:
                _evaluate(conn, _pairs([rule], scope), outcome)
            # A disabled rule's open alarms clear, and so do those of sensors a changed scope no longer covers.
            keep = {s.key for s in scope if rule.covers(s)}
            stale = [a for a, key in conn.execute(_OPEN_OF_RULE, (rule.rule_id,)).fetchall() if key not in keep]
            outcome.cleared += clear_alarms(conn, [ClearRequest(a, None, rule.channels) for a in stale])
            conn.execute(_MARK_EVALUATED, (rule.revision, rule.rule_id, rule.revision))

        if hour_passed:
            for rule in enabled:
                if rule.metric.source in _LABELLED_AHEAD:
                    _evaluate(conn, _pairs([rule], _scope_sensors(conn, rule)), outcome)
            conn.execute(_LABELS_CHECKED)

        silence_rules = [r for r in enabled if r.metric.source is Source.SILENCE_S]
        if force_silence or since_silence_s is None or float(since_silence_s) >= silence_check_s:
            for rule in silence_rules:
                _evaluate(conn, _pairs([rule], _scope_sensors(conn, rule)), outcome)
            conn.execute(_SILENCE_CHECKED)
        if events:
            conn.execute(_MOVE_CURSOR, (events[-1].id,))
    return outcome


def evaluate_until_idle(conn: psycopg.Connection[Any], **kwargs: Any) -> Outcome:
    """Run cycles until no event is left (for tests, benchmarks and the CLI). Waits while another evaluator holds
    the cursor."""
    total = Outcome()
    while True:
        outcome = evaluate_cycle(conn, **kwargs)
        if outcome is None:
            time.sleep(0.05)
            continue
        total.events += outcome.events
        total.evaluated += outcome.evaluated
        total.raised += outcome.raised
        total.cleared += outcome.cleared
        kwargs["force_silence"] = False
        if not outcome.events:
            return total


class AlarmEvaluator:
    """Runs evaluation cycles whenever change events are committed (LISTEN `livinglab_events`), every `poll_s`
    regardless, and every `silence_check_s` for the silence clock, but not more often than every `min_interval_s`
    while events keep coming; reconnects after database failures."""

    def __init__(
        self,
        database_url: str,
        *,
        policy: DatabasePolicy,
        poll_s: float = 1.0,
        silence_check_s: float = 2.0,
        min_interval_s: float = 0.5,
        application_name: str = "livinglab-alarms",
    ) -> None:
        self._database_url = database_url
        self._policy = policy
        self.poll_s = poll_s
        self.silence_check_s = silence_check_s
        self.min_interval_s = min_interval_s
        self._application_name = application_name
        #: Cycles that failed and were rolled back, alarms raised and cleared by this evaluator.
        self.failures = 0
        self.raised = 0
        self.cleared = 0
        self.last_error: str | None = None

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(0.5, 10.0)
        while not stop.is_set():
            try:
                self._run_connected(stop, backoff)
            except psycopg.Error as exc:
                self.failures += 1
                self.last_error = describe_error(exc)
                delay = backoff.failed()
                if is_transient(exc):
                    log.warning("alarm evaluation failed (%s); reconnecting in %.1f s", self.last_error, delay)
                else:
                    # Not the link: a schema or data problem. Keep trying (the cycle rolled back, nothing is lost)
                    # and say so loudly, rather than let alarms stop in a processor that goes on working.
                    log.error("alarm evaluation failed (%s); retrying in %.1f s", self.last_error, delay)
                stop.wait(delay)

    def _run_connected(self, stop: threading.Event, backoff: Backoff) -> None:
        with connect(
            self._database_url, policy=self._policy, application_name=self._application_name, autocommit=True
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL_EVENTS}")
            backoff.succeeded()
            while not stop.is_set():
                started = time.monotonic()
                outcome = evaluate_cycle(conn, silence_check_s=self.silence_check_s)
                if outcome is not None:
                    self.raised += len(outcome.raised)
                    self.cleared += len(outcome.cleared)
                    if outcome.events:
                        # While events keep coming, let a few gather: a cycle over several processor rounds costs
                        # little more than one over a single round (a truncated event widens to its city once).
                        stop.wait(max(0.0, self.min_interval_s - (time.monotonic() - started)))
                        continue
                # Wake on the next committed event, or after poll_s (the silence clock, a standby's turn).
                wait_s = min(self.poll_s, self.silence_check_s)
                for _ in conn.notifies(timeout=wait_s, stop_after=1):
                    pass
