"""Scenarios: the shipped cities load, sensors sit in their districts, registry files round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from livinglab.domain import Kind
from livinglab.errors import ConfigurationError
from livinglab.sensor_files import parse_sensors
from livinglab.sensors import SensorSpec
from simulators.command import districts_geojson, registry_document
from simulators.scenario import SHIPPED, District, load_scenario, parse_scenario


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_place_every_sensor_inside_its_district(name: str) -> None:
    scenario = load_scenario(name)
    districts = {(scenario.district_city(d), d.name): d for d in scenario.districts}
    assert scenario.sensors
    for sensor in scenario.sensors:
        district = districts[sensor.spec.city, sensor.spec.district]
        assert district.contains(sensor.spec.lat, sensor.spec.lon), sensor.sensor_id
    assert {s.kind for s in scenario.sensors} == {Kind.AIR, Kind.TRAFFIC}


def test_demo_is_small_and_large_has_thousands_of_sensors() -> None:
    demo, large = load_scenario("demo"), load_scenario("large")
    assert len(demo.sensors) <= 20
    assert len(large.sensors) >= 3000
    assert len(large.districts) == 42
    assert len({s.sensor_id for s in large.sensors}) == len(large.sensors)


def test_generated_sensors_are_the_same_every_time() -> None:
    first = [(s.sensor_id, s.spec.lat, s.spec.lon, s.spec.road_type) for s in load_scenario("large").sensors[:200]]
    again = [(s.sensor_id, s.spec.lat, s.spec.lon, s.spec.road_type) for s in load_scenario("large").sensors[:200]]
    assert first == again


def test_point_in_outline() -> None:
    square = District("x", ((0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)))
    assert square.contains(0.5, 0.5)
    assert not square.contains(1.5, 0.5)
    assert not District("no outline").contains(0.5, 0.5)


def test_scenario_errors_name_the_problem(tmp_path: Path) -> None:
    bad_district = (
        "city: c\ndistricts: [{name: A}]\nsensors:\n  - {sensor_id: s1, kind: air, district: B, lat: 0, lon: 0}\n"
    )
    with pytest.raises(ConfigurationError, match="undeclared district"):
        parse_scenario(bad_district)
    traffic_without_road = "city: c\nsensors:\n  - {sensor_id: t1, kind: traffic, district: A, lat: 0, lon: 0}\n"
    with pytest.raises(ConfigurationError, match="t1"):
        parse_scenario(traffic_without_road)
    bad_unit = (
        "city: c\nsensors:\n  - {sensor_id: s1, kind: air, district: A, lat: 0, lon: 0, model: {units: {pm25: ppm}}}\n"
    )
    with pytest.raises(ConfigurationError, match="ppm"):
        parse_scenario(bad_unit)
    with pytest.raises(ConfigurationError, match="not a shipped scenario"):
        load_scenario(str(tmp_path / "missing.yaml"))


def test_registry_files_import_as_the_same_specs() -> None:
    scenario = load_scenario("demo")
    expected = list(scenario.specs)
    assert parse_sensors(registry_document(scenario, "yaml"), fmt="yaml") == expected
    assert parse_sensors(registry_document(scenario, "csv"), fmt="csv") == expected
    assert [SensorSpec.model_validate(row) for row in json.loads(registry_document(scenario, "json"))] == expected


def test_district_outlines_as_geojson() -> None:
    scenario = load_scenario("demo")
    collection = districts_geojson(scenario)
    assert [f["properties"]["district"] for f in collection["features"]] == [d.name for d in scenario.districts]
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        lon, lat = ring[0]
        assert 106 < lon < 107
        assert -7 < lat < -6
