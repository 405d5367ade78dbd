"""Ground truth of alarms: which (rule, sensor) pairs should have an open alarm once the platform has caught up.

Computed from the ground truth's own index values and aggregates (never from the platform's tables or its
evaluator), with the semantics of CONTRACT.md section 5 written out plainly here: per sensor the newest value
labelled at or before `at_s`; with `for_s`, that many seconds of consecutive windows up to the newest, each meeting
the condition. A pair whose newest value does not exist (an index without enough valid hours, a counter without an
hour) is undetermined: its alarm keeps whatever state an earlier value gave it, so it is left out of comparisons.
Rules on `silence_s` depend on the wall clock of the run, not on the data, and are not predicted here.

Only the final state is predicted. While an accelerated run replays a day, the newest values move (a label gains
hours, a late reading arrives) and an alarm may be raised and cleared along the way; with `clear_threshold` equal
to `threshold`, as in the default rule set, the state at the end depends on the final values alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from livinglab.alarms.rules import RuleSpec
from livinglab.domain import QUANTITIES, Kind, Window
from simulators.scenario import Scenario
from simulators.truth import GroundTruth

HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class ExpectedAlarms:
    """`open`: the (rule_id, sensor_id) pairs that should have an open alarm; `undetermined`: pairs left out."""

    open: frozenset[tuple[str, str]]
    undetermined: frozenset[tuple[str, str]]


def _holds(op: str, value: float, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
    }[op]


#: Per sensor, (label in seconds, value or None), newest first.
Series = dict[str, list[tuple[int, float | None]]]


def _series(truth: GroundTruth, scenario: Scenario, metric: str, at_s: int) -> Series:
    """Per sensor, (label, value) of `metric` labelled at or before `at_s`, newest first."""
    series: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    if metric == "ispu":
        for v in truth.ispu:
            series[v.sensor_id].append((v.window_end_s, None if v.ispu is None else float(v.ispu)))
    elif metric == "aqi":
        for a in truth.aqi:
            series[a.sensor_id].append((a.hour_s, None if a.aqi is None else float(a.aqi)))
    elif metric == "degree_of_saturation":
        for t in truth.traffic:
            series[t.sensor_id].append((t.hour_s, t.degree_of_saturation))
    elif metric == "los_target_missed":
        for t in truth.traffic:
            series[t.sensor_id].append((t.hour_s, 1.0 if t.los > t.los_target else 0.0))
    elif metric.startswith("mean_1m:"):
        quantity = metric.split(":", 1)[1]
        for agg in truth.aggregates[Window.MINUTE]:
            if agg.quantity == quantity:
                series[agg.sensor_id].append((agg.window_start_s, agg.mean))
    elif metric == "completeness_1h":
        series.update(_completeness(truth, scenario, at_s))
    return {
        sensor_id: sorted(((label, value) for label, value in values if label <= at_s), reverse=True)
        for sensor_id, values in series.items()
    }


def _completeness(truth: GroundTruth, scenario: Scenario, at_s: int) -> Series:
    """The last complete hour's received / expected readings: per quantity the sensor reported in the 7 days up to
    the hour, at most 3600 / interval_s readings count."""
    hour = at_s // HOUR_S * HOUR_S - HOUR_S
    counts: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for agg in truth.aggregates[Window.HOUR]:
        counts[agg.sensor_id][agg.quantity][agg.window_start_s] = agg.count
    result: dict[str, list[tuple[int, float | None]]] = {}
    for sensor in scenario.sensors:
        expected_per_quantity = HOUR_S / sensor.spec.interval_s
        reported = [
            hours
            for quantity, hours in counts[sensor.sensor_id].items()
            if QUANTITIES[quantity].kind is sensor.kind and any(hour - 7 * 86400 < h <= hour for h in hours)
        ]
        if not reported:
            continue
        received = sum(min(hours.get(hour, 0), expected_per_quantity) for hours in reported)
        result[sensor.sensor_id] = [(hour, received / (expected_per_quantity * len(reported)))]
    return result


def _window_s(metric: str) -> int:
    return 60 if metric.startswith("mean_1m:") else HOUR_S


def _applies(rule: RuleSpec, kind: Kind) -> bool:
    metric = rule.metric
    if metric in ("ispu", "aqi"):
        return kind is Kind.AIR
    if metric in ("degree_of_saturation", "los_target_missed"):
        return kind is Kind.TRAFFIC
    if metric.startswith("mean_1m:"):
        return QUANTITIES[metric.split(":", 1)[1]].kind is kind
    return True


def expected_alarms(truth: GroundTruth, scenario: Scenario, rules: Iterable[RuleSpec], at_s: int) -> ExpectedAlarms:
    """The alarms that should be open at `at_s` (a time after the run, once the platform has caught up)."""
    opened: set[tuple[str, str]] = set()
    undetermined: set[tuple[str, str]] = set()
    for rule in rules:
        if not rule.enabled or rule.metric == "silence_s":
            continue
        rule_id = str(rule.rule_id)
        series = _series(truth, scenario, rule.metric, at_s)
        step = _window_s(rule.metric)
        needed = max(1, math.ceil(rule.for_s / step))
        for sensor in scenario.sensors:
            spec = sensor.spec
            in_scope = (
                _applies(rule, sensor.kind)
                and rule.sensor_id in (None, sensor.sensor_id)
                and rule.city in (None, spec.city)
                and rule.district in (None, spec.district)
            )
            if not in_scope:
                continue
            values: Sequence[tuple[int, float | None]] = series.get(sensor.sensor_id, [])
            pair = (rule_id, sensor.sensor_id)
            if not values or values[0][1] is None:
                undetermined.add(pair)
                continue
            window = values[:needed]
            consecutive = all(window[i - 1][0] - window[i][0] == step for i in range(1, len(window)))
            if (
                len(window) == needed
                and consecutive
                and all(v is not None and _holds(rule.op, v, rule.threshold) for _, v in window)
            ):
                opened.add(pair)
            elif needed > 1 and _holds(rule.op, values[0][1], rule.threshold):
                # The newest window meets the condition but not the ones before it: an alarm raised earlier stays
                # open (clearing looks at the newest value only), so the state depends on the order of arrival.
                undetermined.add(pair)
    return ExpectedAlarms(frozenset(opened), frozenset(undetermined))
