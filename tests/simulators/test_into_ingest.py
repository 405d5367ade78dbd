"""A faulty simulated city into a real Mosquitto and a real ingester: stored readings and rejections by reason are
exactly what the simulator's ledger says they should be, for devices on the platform's topics and for LoRaWAN
devices behind either network server (also the codec members ignored and the frames missed, per sensor)."""

from __future__ import annotations

import time

import pytest

from ingest import Ingester, IngestSettings
from livinglab.domain import MESSAGE_REASONS
from livinglab.embedded import MosquittoBroker
from simulators.faults import FaultRates
from simulators.lorawan import Network, lorawan_scenario
from simulators.plan import Period
from simulators.run import Mode
from tests.support.roles import rows, running, scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import (
    FAULTS,
    city,
    expected_readings,
    rejected_by_reason,
    seed_with_faults,
    simulate,
    stored_readings,
)

pytestmark = pytest.mark.integration

#: The rejection reasons the section 1 simulator produces: every one a message can earn.
SECTION_1_REASONS = frozenset(r.value for r in MESSAGE_REASONS)


def test_backfill_with_faults_stores_and_rejects_exactly_what_the_ledger_expects(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    scenario = city()
    register(fresh_database_url, scenario.specs)
    end = time.time() // 60 * 60
    period = Period(end - 6 * 3600, end)
    # Rejections come from faults drawn per sensor and calendar day: take a seed whose plan of this period holds
    # every reason the last assertions name (with a fixed seed, some hours of the day lack unknown_sensor).
    seed = seed_with_faults(scenario, topic_prefix, period, frozenset(), reasons=SECTION_1_REASONS, first=3)
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
            scenario, mqtt_broker.url, topic_prefix, mode=Mode.BACKFILL, period=period, rates=FAULTS, seed=seed
        )  # fmt: skip
        expected_rejected = sum(ledger.rejections.values())
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected") >= expected_rejected, timeout_s=60
        )
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") >= ledger.readings_stored, timeout_s=60
        )
        time.sleep(1.0)  # anything beyond the expected would arrive with the last batch
    assert set(ledger.rejections) == SECTION_1_REASONS
    assert rejected_by_reason(fresh_database_url) == ledger.rejections
    assert stored_readings(fresh_database_url) == expected_readings(ledger)
    assert scalar(fresh_database_url, "SELECT sum(duplicates) FROM ingest_counters") == ledger.duplicates
    assert ledger.surprises == 0


#: The LoRaWAN faults, and the device faults that make sense behind a network server, at rates a few hours show.
LORAWAN_FAULTS = FaultRates.parse(
    "off,gap=0.02,outage=0.5,burst=0.5,clock_skew=0.5,late=0.01,out_of_order=0.01,duplicate=0.02,"
    "conflicting_duplicate=0.01,no_codec=0.02,unknown_dev_eui=0.01,extra_members=0.3,fcnt_gap=0.02"
)
#: The faults behind the assertions below (rejections undecoded_payload, unknown_sensor and conflicting_duplicate,
#: frames missed, codec members ignored), each of which a few hours at these rates may by chance not hold.
LORAWAN_FAULT_KINDS = frozenset({"no_codec", "unknown_dev_eui", "conflicting_duplicate", "fcnt_gap", "extra_members"})
LORAWAN_COUNTERS = """
SELECT s.sensor_id, sum(c.fcnt_gaps), sum(c.frames_missed), sum(c.ignored_members)
FROM ingest_counters c JOIN sensors s USING (sensor_key) GROUP BY s.sensor_id
"""


@pytest.mark.parametrize("network", ["chirpstack", "tts"])
def test_lorawan_devices_behind_a_network_server_match_the_ledger(
    network: Network, fresh_database_url: str, own_broker: MosquittoBroker
) -> None:
    url = fresh_database_url
    scenario = lorawan_scenario(city(), network)
    register(url, scenario.specs)
    end = time.time() // 60 * 60
    period = Period(end - 3 * 3600, end)
    seed = seed_with_faults(
        scenario, "livinglab/v1", period, LORAWAN_FAULT_KINDS, rates=LORAWAN_FAULTS, first=5, network=network
    )
    settings = IngestSettings(database_url=url, mqtt_url=own_broker.url, client_id=f"ingest-{network}")
    ingester = Ingester(settings)
    with running(ingester):
        assert ingester.wait_connected()
        ledger = simulate(
            scenario, own_broker.url, "livinglab/v1", mode=Mode.BACKFILL, period=period,
            rates=LORAWAN_FAULTS, seed=seed, network=network,
        )  # fmt: skip
        wait_until(lambda: ingester.metrics.messages._value.get() >= ledger.messages, timeout_s=60)
    assert ledger.surprises == 0
    assert {"undecoded_payload", "unknown_sensor", "conflicting_duplicate"} <= set(ledger.rejections)
    assert rejected_by_reason(url) == ledger.rejections
    assert stored_readings(url) == expected_readings(ledger)
    assert scalar(url, "SELECT sum(duplicates) FROM ingest_counters") == ledger.duplicates
    expected = {sensor_id: (gaps, missed, ignored) for sensor_id, (_, gaps, missed, ignored) in ledger.lorawan.items()}
    counted = {sensor_id: (int(g), int(m), int(i)) for sensor_id, g, m, i in rows(url, LORAWAN_COUNTERS)}
    assert counted == expected
    assert set(expected) == {s.sensor_id for s in scenario.sensors}
    assert sum(m for _, m, _ in expected.values()) > 0
    assert sum(i for _, _, i in expected.values()) > 0
