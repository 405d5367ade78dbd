"""One simulated day, accelerated, with faults, through a real platform (Mosquitto, PostgreSQL, ingester and
processor): aggregates, ISPU, AQI and traffic LOS equal the simulator's independent ground truth, and the rejected
messages by reason equal the injected faults."""

from __future__ import annotations

import time

import pytest

from livinglab.domain import MESSAGE_REASONS, Window
from livinglab.embedded import MosquittoBroker
from simulators.truth import GroundTruth, compute_ground_truth
from tests.support.roles import scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import (
    FAULT_KINDS,
    city,
    differences,
    expected_readings,
    faulty_day,
    platform_aggregates,
    platform_aqi,
    platform_ispu,
    platform_traffic,
    rejected_by_reason,
    stored_readings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _idle(url: str) -> bool:
    queued = scalar(url, "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups)")
    return queued == 0


def _expected_aggregates(truth: GroundTruth, window: Window) -> dict[tuple[str, str, int], tuple[object, ...]]:
    return {
        (a.sensor_id, a.quantity, a.window_start_s): (a.count, a.mean, a.min, a.max, a.p50, a.p95, a.completeness)
        for a in truth.aggregates[window]
    }


def test_one_accelerated_day_with_faults_matches_the_ground_truth(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    url = fresh_database_url
    scenario = city()
    register(url, scenario.specs)
    with faulty_day(url, mqtt_broker.url, topic_prefix, scenario) as ledger:
        rejected = sum(ledger.rejections.values())
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected") >= rejected, timeout_s=60)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM readings") >= ledger.readings_stored, timeout_s=60)
        wait_until(lambda: _idle(url), timeout_s=120, interval_s=0.5)
        time.sleep(1.5)  # a rollup released in the last round would be queued again by now
        wait_until(lambda: _idle(url), timeout_s=60, interval_s=0.5)

    # What reached the database: every injected rejection, by reason, and exactly the readings the ledger expects.
    # Section 1 messages only: the LoRaWAN reasons have their own run (tests/simulators/test_into_ingest.py).
    assert set(ledger.rejections) == {reason.value for reason in MESSAGE_REASONS}
    assert rejected_by_reason(url) == ledger.rejections
    assert stored_readings(url) == expected_readings(ledger)
    assert ledger.surprises == 0
    for fault in FAULT_KINDS:
        assert ledger.faults[fault] > 0, fault

    truth = compute_ground_truth(scenario, ledger)
    for window in Window:
        assert differences(_expected_aggregates(truth, window), platform_aggregates(url, window.table)) == [], window

    expected_ispu = {
        (v.sensor_id, v.window_end_s): (v.ispu, v.category, v.critical_parameter, v.sub_indices)
        for v in truth.ispu
        if v.ispu is not None
    }
    actual_ispu = {k: v for k, v in platform_ispu(url).items() if v[0] is not None}
    assert len(expected_ispu) >= 10  # labels with 18 valid hours: the last ~7 hours of the day and ~6 after
    assert differences(expected_ispu, actual_ispu) == []

    expected_aqi = {
        (v.sensor_id, v.hour_s): (v.aqi, v.category, v.dominant_pollutant, v.sub_indices, v.nowcast)
        for v in truth.aqi
        if v.aqi is not None
    }
    actual_aqi = {k: v for k, v in platform_aqi(url).items() if v[0] is not None}
    assert len(expected_aqi) > 40
    assert differences(expected_aqi, actual_aqi) == []

    expected_traffic = {
        (t.sensor_id, t.hour_s): (
            t.flow_veh_h, t.flow_pcu_h, t.capacity_pcu_h, t.degree_of_saturation, t.los, t.los_target,
            t.mean_speed_kmh,
        )
        for t in truth.traffic
    }  # fmt: skip
    # Two counters over a day (25 clock hours, the first and last partly): an outage (up to 3 hours) can leave whole
    # hours of a counter without a reading, and the other faults take a few more.
    assert len(expected_traffic) >= 2 * 20
    assert differences(expected_traffic, platform_traffic(url)) == []
