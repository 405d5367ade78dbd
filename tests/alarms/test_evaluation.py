"""Alarm evaluation against a real database: what the processors store raises and clears alarms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.alarms.support import add_rule, alarms, process_and_evaluate
from tests.processing.writes import write_readings
from tests.support.clock import clear_of_hour_end
from tests.support.roles import rows
from tests.support.sensors import register, traffic

pytestmark = pytest.mark.integration

MINUTE = 60


@dataclass(frozen=True, slots=True)
class Clock:
    """The test's "now", fixed once, so that a minute or an hour turning mid-test cannot open a gap between windows."""

    started: datetime

    def minute(self, minutes_ago: int) -> float:
        """The start of the minute `minutes_ago` before the test's (Unix seconds)."""
        now = self.started.replace(second=0, microsecond=0)
        return (now - timedelta(minutes=minutes_ago)).timestamp()

    def hour(self, hours_ago: int) -> float:
        """The start of the hour `hours_ago` before the test's (Unix seconds)."""
        now = self.started.replace(minute=0, second=0, microsecond=0)
        return (now - timedelta(hours=hours_ago)).timestamp()

    def minutes_of(self, hours_ago: int, offset_s: float = 0.0, count: int = 60) -> np.ndarray:
        """`count` minutes of that hour, `offset_s` into each."""
        return self.hour(hours_ago) + offset_s + 60.0 * np.arange(count)


@pytest.fixture(autouse=True)
def clock() -> Clock:
    """The test's clock. The processor and the evaluator read the database's: a test does not start in the last
    30 s of an hour, so that the hour they see as the newest completed is the test's."""
    clear_of_hour_end(30)
    return Clock(datetime.now(UTC))


def test_mean_1m_raises_holds_through_hysteresis_and_clears(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25-high", metric="mean_1m:pm25", threshold=50, clear_threshold=40)

    write_readings(url, key, "pm25", [clock.minute(10)], [60.0])
    outcome = process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"], a["value"]) for a in alarms(url, rule)] == [("aq-1", "active", 60.0)]
    assert [a["rule_id"] for a in outcome.raised] == [rule]

    # 45 no longer meets > 50 but still meets > 40: the alarm stays, tracking the value.
    write_readings(url, key, "pm25", [clock.minute(9)], [45.0])
    process_and_evaluate(url)
    (alarm,) = alarms(url, rule)
    assert (alarm["state"], alarm["value"], alarm["last_value"]) == ("active", 60.0, 45.0)

    write_readings(url, key, "pm25", [clock.minute(8)], [40.0])
    process_and_evaluate(url)
    (alarm,) = alarms(url, rule)
    assert (alarm["state"], alarm["last_value"]) == ("cleared", 40.0)
    history = rows(url, "SELECT event, value FROM alarm_history WHERE alarm_id = %s ORDER BY id", (alarm["alarm_id"],))
    assert history == [("raised", 60.0), ("cleared", 40.0)]

    # After it cleared, the condition holding again is a new episode.
    write_readings(url, key, "pm25", [clock.minute(7)], [70.0])
    process_and_evaluate(url)
    assert [(a["state"], a["value"]) for a in alarms(url, rule)] == [("cleared", 60.0), ("active", 70.0)]
    events = rows(url, "SELECT city, payload->>'event' FROM events WHERE type = 'alarm' ORDER BY id")
    assert events == [("jakarta", "raised"), ("jakarta", "cleared"), ("jakarta", "raised")]


@pytest.mark.parametrize(("for_s", "windows_to_raise"), [(0, 1), (60, 1), (61, 2), (120, 2), (121, 3)])
def test_for_s_counts_consecutive_windows(
    fresh_database_url: str, for_s: int, windows_to_raise: int, clock: Clock
) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25-held", metric="mean_1m:pm25", threshold=50, for_s=for_s)
    for n in range(windows_to_raise):
        assert alarms(url, rule) == []
        write_readings(url, key, "pm25", [clock.minute(20 - n)], [80.0])
        process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["active"]


def test_for_s_needs_windows_without_a_gap(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25-held", metric="mean_1m:pm25", threshold=50, for_s=120)
    # Two windows meet the condition, but a minute between them is missing.
    write_readings(url, key, "pm25", [clock.minute(20), clock.minute(18)], [80.0, 80.0])
    process_and_evaluate(url)
    assert alarms(url, rule) == []
    write_readings(url, key, "pm25", [clock.minute(17)], [80.0])
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["active"]


def test_clear_threshold_edge(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25", metric="mean_1m:pm25", op=">=", threshold=50, clear_threshold=40)
    write_readings(url, key, "pm25", [clock.minute(10)], [50.0])  # exactly the threshold meets >=
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["active"]
    write_readings(url, key, "pm25", [clock.minute(9)], [40.0])  # exactly the clear threshold still meets >= 40
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["active"]
    write_readings(url, key, "pm25", [clock.minute(8)], [39.99])
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["cleared"]


def test_late_reading_in_the_newest_window_raises_then_clears(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50)
    newest = clock.minute(5)
    write_readings(url, key, "pm25", [newest], [30.0])
    process_and_evaluate(url)
    assert alarms(url, rule) == []
    # A late reading in the same (newest) window lifts its mean to 65.
    write_readings(url, key, "pm25", [newest + 30], [100.0])
    process_and_evaluate(url)
    assert [(a["state"], a["value"]) for a in alarms(url, rule)] == [("active", 65.0)]
    # A late reading in an older window does not change the newest value: nothing happens.
    write_readings(url, key, "pm25", [newest - 600], [0.0])
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, rule)] == ["active"]
    # Two more late readings in the newest window bring its mean to (30 + 100 + 0 + 0) / 4 = 32.5: it clears.
    write_readings(url, key, "pm25", [newest + 10, newest + 20], [0.0, 0.0])
    process_and_evaluate(url)
    assert [(a["state"], a["last_value"]) for a in alarms(url, rule)] == [("cleared", 32.5)]


def test_a_new_rule_raises_at_once_and_narrowing_or_disabling_it_clears(
    fresh_database_url: str,
    clock: Clock,
) -> None:
    url = fresh_database_url
    keys = register(url, "aq-1", "aq-2")
    write_readings(url, keys["aq-1"], "pm25", [clock.minute(10)], [90.0])
    write_readings(url, keys["aq-2"], "pm25", [clock.minute(10)], [10.0])
    process_and_evaluate(url)
    rule = add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50, city="jakarta")
    process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "active")]
    # Narrowed to another district: aq-1's alarm clears (its sensor is no longer watched); disabled: nothing opens.
    add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50, city="jakarta", district="Gambir")
    process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "cleared")]
    add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50, city="jakarta")
    process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "cleared"), ("aq-1", "active")]
    add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50, city="jakarta", enabled=False)
    process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "cleared"), ("aq-1", "cleared")]


def test_silence_raises_and_clears(fresh_database_url: str) -> None:
    url = fresh_database_url
    keys = register(url, "aq-1", "aq-2")
    rule = add_rule(url, rule_id="quiet", metric="silence_s", threshold=600)
    rows(url, "UPDATE sensors SET created_at = now() - interval '1 hour' WHERE sensor_id = 'aq-1' RETURNING 1")
    process_and_evaluate(url)
    # aq-2 was registered just now: it has not been silent for 600 s.
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "active")]
    assert alarms(url, rule)[0]["value"] >= 3600
    rows(
        url,
        "INSERT INTO ingest_counters (sensor_key, hour, messages, accepted, last_seen)"
        " VALUES (%s, date_trunc('hour', now()), 1, 1, now()) RETURNING 1",
        (keys["aq-1"],),
    )
    process_and_evaluate(url)
    assert [(a["sensor_id"], a["state"]) for a in alarms(url, rule)] == [("aq-1", "cleared")]


HOUR_S = 3600


def test_ispu_and_aqi_raise_and_clear(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    ispu = add_rule(url, rule_id="ispu-high", metric="ispu", threshold=150)
    aqi = add_rule(url, rule_id="aqi-high", metric="aqi", threshold=200)
    # 25 full hours of PM2.5 at 150 ug/m3: ISPU about 200, AQI about 225.
    for hours_ago in range(1, 26):
        write_readings(url, key, "pm25", clock.minutes_of(hours_ago), np.full(60, 150.0))
    process_and_evaluate(url)
    (ispu_alarm,) = alarms(url, ispu)
    (aqi_alarm,) = alarms(url, aqi)
    assert ispu_alarm["state"] == aqi_alarm["state"] == "active"
    assert ispu_alarm["value"] > 150
    assert aqi_alarm["value"] > 200
    # Late readings between the others halve every hourly mean (75 ug/m3): ISPU about 120, AQI about 160.
    for hours_ago in range(1, 26):
        write_readings(url, key, "pm25", clock.minutes_of(hours_ago, 30.0), np.zeros(60))
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, ispu)] == ["cleared"]
    assert [a["state"] for a in alarms(url, aqi)] == ["cleared"]
    assert alarms(url, ispu)[0]["last_value"] < 150


def _counts(clock: Clock, url: str, key: int, hours_ago: int, kr_per_minute: float) -> None:
    minutes = clock.minutes_of(hours_ago)
    for quantity, value in (("sm", 0.0), ("kr", kr_per_minute), ("kb", 0.0), ("speed", 30.0)):
        write_readings(url, key, quantity, minutes, np.full(60, value))


def test_degree_of_saturation_and_los_target_missed_raise_and_clear(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, traffic("tc-1"))["tc-1"]
    dj = add_rule(url, rule_id="dj", metric="degree_of_saturation", threshold=0.85, clear_threshold=0.75)
    los = add_rule(url, rule_id="los", metric="los_target_missed", op=">=", threshold=1, for_s=7200)
    # A four-lane divided arterial carries about 3,000 pcu/h: 60 cars a minute saturate it.
    _counts(clock, url, key, 3, 60.0)
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, dj)] == ["active"]
    assert alarms(url, los) == []  # one hour below target is not two
    _counts(clock, url, key, 2, 60.0)
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, los)] == ["active"]
    # A quiet newer hour: both clear.
    _counts(clock, url, key, 1, 5.0)
    process_and_evaluate(url)
    assert [a["state"] for a in alarms(url, dj)] == ["cleared"]
    assert [a["state"] for a in alarms(url, los)] == ["cleared"]


def test_completeness_raises_and_a_late_upload_clears_it(fresh_database_url: str, clock: Clock) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="sparse", metric="completeness_1h", op="<", threshold=0.75)
    write_readings(url, key, "pm25", clock.minutes_of(3), np.full(60, 10.0))
    write_readings(url, key, "pm25", clock.minutes_of(2), np.full(60, 10.0))
    write_readings(url, key, "pm25", clock.minutes_of(1, count=30), np.full(30, 10.0))  # the last hour half received
    process_and_evaluate(url)
    (alarm,) = alarms(url, rule)
    assert (alarm["state"], alarm["value"]) == ("active", 0.5)
    # The gateway uploads the rest of its buffer: the hour is complete after all.
    write_readings(url, key, "pm25", clock.minutes_of(1)[30:], np.full(30, 10.0))
    process_and_evaluate(url)
    assert [(a["state"], a["last_value"]) for a in alarms(url, rule)] == [("cleared", 1.0)]


def test_an_ispu_label_that_becomes_current_is_evaluated_when_its_hour_ends(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="ispu-high", metric="ispu", threshold=100)
    process_and_evaluate(url)
    # The label of the hour that just ended was computed ahead (no event announces it when its hour ends).
    rows(
        url,
        "INSERT INTO ispu_hourly (sensor_key, window_end, ispu, category) VALUES"
        " (%s, date_trunc('hour', now()), 150, 'Tidak Sehat') RETURNING 1",
        (key,),
    )
    rows(url, "UPDATE alarm_evaluator SET labels_checked_at = now() - interval '1 hour' RETURNING 1")
    process_and_evaluate(url)
    assert [(a["state"], a["value"]) for a in alarms(url, rule)] == [("active", 150.0)]
