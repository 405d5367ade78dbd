"""One simulated day with faults through a real platform (Mosquitto, PostgreSQL, ingester, processor with its alarm
evaluator), with the default rule set and a few more: the alarms open at the end are the ones the simulator's
ground truth expects (simulators/truth/alarms.py)."""

from __future__ import annotations

import time

import psycopg
import pytest

from livinglab.alarms.rule_files import default_rules, parse_rules
from livinglab.alarms.store import import_rules
from livinglab.embedded import MosquittoBroker
from simulators.truth import compute_ground_truth
from simulators.truth.alarms import expected_alarms
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import city, faulty_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXTRA_RULES = """
- {rule_id: aqi-unhealthy, name: AQI above 100, metric: aqi, op: ">", threshold: 100, severity: warning}
- {rule_id: dj-high, name: DJ above 0.8, metric: degree_of_saturation, op: ">", threshold: 0.8, severity: warning}
- {rule_id: pm25-1m, name: PM2.5 above 35, metric: "mean_1m:pm25", op: ">", threshold: 35, severity: info}
- {rule_id: los-now, name: LOS below target, metric: los_target_missed, op: ">=", threshold: 1, severity: info}
# Open at the end of any day, whatever its hour: the ones above may all have cleared by then (a quiet afternoon).
- {rule_id: pm25-present, name: PM2.5 above 1, metric: "mean_1m:pm25", op: ">", threshold: 1, severity: info}
"""


#: Seconds after an hour ends by which the processor's clock has tallied it (it ticks every 30 s by default).
_TALLIED_S = 90


def _caught_up(url: str) -> bool:
    return bool(
        scalar(
            url,
            "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups) = 0"
            " AND (SELECT cursor FROM alarm_evaluator) >= (SELECT coalesce(max(id), 0) FROM events"
            "      WHERE type <> 'alarm')",
        )
    )


def test_alarms_at_the_end_of_a_day_with_faults_equal_the_ground_truth(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    url = fresh_database_url
    scenario = city()
    register(url, scenario.specs)
    rules = [*default_rules(), *parse_rules(EXTRA_RULES)]
    with psycopg.connect(url) as conn:
        import_rules(conn, rules)
    with faulty_day(url, mqtt_broker.url, topic_prefix, scenario, alarm_poll_s=0.2) as ledger:
        wait_until(lambda: scalar(url, "SELECT count(*) FROM readings") >= ledger.readings_stored, timeout_s=60)
        wait_until(lambda: _caught_up(url), timeout_s=120, interval_s=0.5)
        time.sleep(1.5)  # a rollup released in the last round would be queued again by now
        wait_until(lambda: _caught_up(url), timeout_s=60, interval_s=0.5)
        at_s = int(time.time())
        if at_s % 3600 < _TALLIED_S:
            # An hour ended moments ago: the ground truth at `at_s` counts it complete, the platform once its clock
            # has tallied it. Wait for that, and for the evaluator to see what the tally wrote.
            time.sleep(_TALLIED_S - at_s % 3600)
            wait_until(lambda: _caught_up(url), timeout_s=60, interval_s=0.5)
            at_s = int(time.time())

    truth = compute_ground_truth(scenario, ledger)
    expected = expected_alarms(truth, scenario, rules, at_s)
    opened = {
        (rule_id, sensor_id)
        for rule_id, sensor_id in rows(
            url,
            "SELECT a.rule_id, s.sensor_id FROM alarms a JOIN sensors s USING (sensor_key)"
            " JOIN alarm_rules r USING (rule_id) WHERE a.state <> 'cleared' AND r.metric <> 'silence_s'",
        )
    }
    assert expected.open, "the scenario should leave some alarm open"
    assert opened - expected.undetermined == expected.open
    # Every open alarm was announced once, as raised, on the stream's feed.
    raised = scalar(url, "SELECT count(*) FROM events WHERE type = 'alarm' AND payload->>'event' = 'raised'")
    assert raised == scalar(url, "SELECT count(*) FROM alarms")
