"""A faulty simulated city into a real Mosquitto and a real ingester: stored readings and rejections by reason are
exactly what the simulator's ledger says they should be."""

from __future__ import annotations

import time

import pytest

from ingest import Ingester, IngestSettings
from livinglab.domain import RejectionReason
from livinglab.embedded import MosquittoBroker
from simulators.plan import Period
from simulators.run import Mode
from tests.support.roles import running, scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import FAULTS, city, expected_readings, rejected_by_reason, simulate, stored_readings

pytestmark = pytest.mark.integration


def test_backfill_with_faults_stores_and_rejects_exactly_what_the_ledger_expects(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    scenario = city()
    register(fresh_database_url, scenario.specs)
    end = time.time() // 60 * 60
    settings = IngestSettings(
        database_url=fresh_database_url,
        mqtt_url=mqtt_broker.url,
        topic_prefix=topic_prefix,
        client_id=f"ingest-{topic_prefix[:13]}",
    )
    ingester = Ingester(settings)
    with running(ingester):
        assert ingester.wait_connected()
        ledger = simulate(
            scenario, mqtt_broker.url, topic_prefix, mode=Mode.BACKFILL, period=Period(end - 6 * 3600, end),
            rates=FAULTS, seed=3,
        )  # fmt: skip
        expected_rejected = sum(ledger.rejections.values())
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected") >= expected_rejected, timeout_s=60
        )
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") >= ledger.readings_stored, timeout_s=60
        )
        time.sleep(1.0)  # anything beyond the expected would arrive with the last batch
    assert set(ledger.rejections) == {reason.value for reason in RejectionReason} - {"retained_message"}
    assert rejected_by_reason(fresh_database_url) == ledger.rejections
    assert stored_readings(fresh_database_url) == expected_readings(ledger)
    assert scalar(fresh_database_url, "SELECT sum(duplicates) FROM ingest_counters") == ledger.duplicates
    assert ledger.surprises == 0
