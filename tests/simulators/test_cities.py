"""A scenario of several cities: how it is written, what it plays, and what a city-limited key sees of it once it
went through a real broker and ingester."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from livinglab.embedded import MosquittoBroker
from livinglab.errors import ConfigurationError
from livinglab.storage.keys import Scope, create_key
from simulators.command import districts_geojson
from simulators.devices import DAY_S, simulate_day
from simulators.plan import Period
from simulators.run import Mode
from simulators.scenario import load_scenario, parse_scenario
from tests.support.api import api_client, walk
from tests.support.ingest import ingesting
from tests.support.roles import scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import expected_readings, simulate, stored_readings

JAKARTA_AIR = "{sensor_id: aq-1, kind: air, district: A, lat: 0.5, lon: 0.5}"


def test_two_cities_have_their_own_districts_sensors_and_weather() -> None:
    scenario = load_scenario("two-cities")
    assert scenario.cities == ("jakarta", "bandung")
    assert {s.spec.city for s in scenario.sensors} == {"jakarta", "bandung"}
    features = districts_geojson(scenario)["features"]
    assert {(f["properties"]["city"], f["properties"]["district"]) for f in features} == {
        ("jakarta", "Gambir"), ("jakarta", "Menteng"), ("bandung", "Coblong"), ("bandung", "Sumur Bandung"),
    }  # fmt: skip
    # Weather is the city's: two reference stations with the same device parameters but in different cities
    # follow different fronts, while a one-city scenario keeps the stream it always had.
    assert scenario.city_stream("jakarta") == 0
    assert scenario.city_stream("bandung") != 0
    day = int(datetime(2026, 8, 3, tzinfo=UTC).timestamp()) // DAY_S
    menteng, coblong = scenario.sensor("aq-menteng-01"), scenario.sensor("aq-coblong-01")
    twin = type(coblong)(coblong.spec.model_copy(update={"city": "jakarta"}), coblong.model, coblong.stream)
    own = simulate_day(coblong, scenario, 1, day).values["pm25"]
    as_if_in_jakarta = simulate_day(twin, scenario, 1, day).values["pm25"]
    assert not np.array_equal(own, as_if_in_jakarta)
    assert simulate_day(menteng, scenario, 1, day).values["pm25"].size == own.size


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"city: a\ncities: [{{city: b}}]\nsensors: [{JAKARTA_AIR}]\n", "not both"),
        (f"cities: [{{city: a, sensors: [{JAKARTA_AIR}]}}, {{city: a}}]\n", "listed twice"),
        (f"cities: [{{city: a}}]\nsensors: [{JAKARTA_AIR}]\n", "under each city"),
        (f"cities: [{{city: a, sensors: [{JAKARTA_AIR}]}}, {{city: b, sensors: [{JAKARTA_AIR}]}}]\n", "repeat"),
        ("timezone_offset_h: 7\n", "needs `city` or `cities`"),
    ],
)
def test_a_bad_several_city_scenario_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_scenario(text)


def test_top_level_defaults_apply_to_every_city_under_its_own() -> None:
    scenario = parse_scenario(
        "defaults: {air: {interval_s: 300}}\n"
        "cities:\n"
        f"  - {{city: a, defaults: {{air: {{interval_s: 120}}}}, sensors: [{JAKARTA_AIR}]}}\n"
        "  - {city: b, sensors: [{sensor_id: aq-2, kind: air, district: B, lat: 1, lon: 1}]}\n"
    )
    assert {s.sensor_id: s.spec.interval_s for s in scenario.sensors} == {"aq-1": 120, "aq-2": 300}
    assert [s.spec.city for s in scenario.sensors] == ["a", "b"]


@pytest.mark.integration
def test_two_cities_through_broker_and_ingester_reach_a_limited_key_apart(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    scenario = load_scenario("two-cities")
    register(fresh_database_url, scenario.specs)
    end = time.time() // 60 * 60
    own = {"topic_prefix": topic_prefix, "client_id": f"ingest-{topic_prefix[:13]}"}
    with ingesting(database_url=fresh_database_url, mqtt_url=mqtt_broker.url, **own):
        ledger = simulate(scenario, mqtt_broker.url, topic_prefix, mode=Mode.BACKFILL, period=Period(end - 3600, end))
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") >= ledger.readings_stored, timeout_s=60
        )
    stored = stored_readings(fresh_database_url)
    assert stored == expected_readings(ledger)
    assert {sensor_id for sensor_id, _, _ in stored} == {s.sensor_id for s in scenario.sensors}
    assert scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 0

    with psycopg.connect(fresh_database_url) as conn:
        bandung = {"Authorization": f"Bearer {create_key(conn, Scope.READ, cities=['bandung'])}"}
        conn.commit()
    with api_client(fresh_database_url) as client:
        sensors = walk(client, "/v1/sensors", {}, bandung)
        assert {s["sensor_id"] for s in sensors} == {s.sensor_id for s in scenario.sensors if s.spec.city == "bandung"}
        assert client.get("/v1/sensors/aq-menteng-01/readings", headers=bandung).status_code == 404
        readings = walk(client, "/v1/sensors/aq-coblong-01/readings", {"quantity": "pm25"}, bandung)
        assert len(readings) == sum(1 for key in stored if key[:2] == ("aq-coblong-01", "pm25"))
