"""Per-city service-level targets (`/v1/cities/{city}`, applied by `/v1/service-levels`), the city list a key
sees, and moving a sensor between cities."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from livinglab.storage.cities import ServiceTargets, all_city_targets, city_targets
from livinglab.storage.keys import Scope, create_key
from tests.support.api import assert_problem, walk
from tests.support.cities import CENTRES, CITY_A, CITY_B, TwoCities

pytestmark = pytest.mark.integration

DEFAULTS = ServiceTargets(air=0.9, traffic=0.8, data=0.95)


def _service_targets(cities_client: TestClient, two_cities: TwoCities, city: str) -> dict[str, float]:
    items = walk(cities_client, "/v1/service-levels", {"city": city}, two_cities.header("all"))
    assert {i["service"] for i in items} == {"air", "traffic", "data"}
    return {i["service"]: i["target"] for i in items}


def test_a_citys_targets_apply_to_its_service_levels_only(cities_client: TestClient, two_cities: TwoCities) -> None:
    body = cities_client.get(f"/v1/cities/{CITY_B}", headers=two_cities.header("all")).json()
    assert body == {
        "city": CITY_B,
        "targets": {"air": 0.5, "traffic": 0.8, "data": 0.95},
        "defaults": {"air": 0.9, "traffic": 0.8, "data": 0.95},
    }
    assert _service_targets(cities_client, two_cities, CITY_B) == {"air": 0.5, "traffic": 0.8, "data": 0.95}

    response = cities_client.put(
        f"/v1/cities/{CITY_A}", json={"targets": {"traffic": 0.7, "data": 0.99}}, headers=two_cities.header("a")
    )
    assert response.status_code == 200, response.text
    assert response.json()["targets"] == {"air": 0.9, "traffic": 0.7, "data": 0.99}
    levels = walk(cities_client, "/v1/service-levels", {"city": CITY_A}, two_cities.header("all"))
    by_service = {i["service"]: i for i in levels}
    assert by_service["traffic"]["target"] == 0.7
    # 8 of 10 hours met: compliant against 0.7, not against 0.99.
    assert (by_service["traffic"]["achieved"], by_service["traffic"]["compliant"]) == (0.8, True)
    assert (by_service["data"]["achieved"], by_service["data"]["compliant"]) == (0.8, False)
    assert _service_targets(cities_client, two_cities, CITY_B)["traffic"] == 0.8

    # PUT replaces: a service left out goes back to the default.
    cities_client.put(f"/v1/cities/{CITY_A}", json={"targets": {"air": 0.6}}, headers=two_cities.header("a"))
    assert _service_targets(cities_client, two_cities, CITY_A) == {"air": 0.6, "traffic": 0.8, "data": 0.95}


def test_targets_are_readable_by_other_roles(api_database_url: str, two_cities: TwoCities) -> None:
    with psycopg.connect(api_database_url) as conn:
        assert city_targets(conn, CITY_B, DEFAULTS) == ServiceTargets(air=0.5, traffic=0.8, data=0.95)
        assert city_targets(conn, "surabaya", DEFAULTS) == DEFAULTS
        assert all_city_targets(conn, DEFAULTS)[CITY_B].air == 0.5


@pytest.mark.parametrize(
    "body",
    [
        {"targets": {"air": 1.5}},
        {"targets": {"air": -0.1}},
        {"targets": {"air": "NaN"}},
        {"targets": {"noise": 0.5}},
        {"targets": {"air": 0.5}, "extra": True},
        {},
    ],
)
def test_bad_targets_are_422(cities_client: TestClient, two_cities: TwoCities, body: dict[str, object]) -> None:
    assert_problem(cities_client.put(f"/v1/cities/{CITY_A}", json=body, headers=two_cities.header("all")), 422)


def test_targets_need_an_admin_key(cities_client: TestClient, two_cities: TwoCities) -> None:
    assert_problem(cities_client.get(f"/v1/cities/{CITY_A}", headers=two_cities.header("a-read")), 403)
    assert_problem(
        cities_client.put(f"/v1/cities/{CITY_A}", json={"targets": {}}, headers=two_cities.header("a-read")), 403
    )
    assert_problem(cities_client.get("/v1/cities/Not%20A%20City", headers=two_cities.header("all")), 422)


def test_the_city_list_holds_the_cities_a_key_sees_and_their_box(
    cities_client: TestClient, two_cities: TwoCities, api_database_url: str
) -> None:
    everything = {c["city"]: c for c in walk(cities_client, "/v1/cities", {}, two_cities.header("all"))}
    assert set(everything) >= {CITY_A, CITY_B}
    assert [c["city"] for c in walk(cities_client, "/v1/cities", {}, two_cities.header("a-read"))] == [CITY_A]
    jakarta = everything[CITY_A]
    assert jakarta["sensors"] == {"air": 2, "traffic": 2}
    assert jakarta["districts"] == ["Gambir", "Menteng"]
    west, south, east, north = jakarta["bbox"]
    lat, lon = CENTRES[CITY_A]
    assert south <= lat + 0.01 <= north
    assert west <= lon + 0.012 <= east
    assert north - south < 0.1
    # A key limited to a city with no sensor yet still sees that city (to set its targets), empty.
    with psycopg.connect(api_database_url) as conn:
        key = create_key(conn, Scope.ADMIN, cities=["cimahi"])
        conn.commit()
    empty = walk(cities_client, "/v1/cities", {}, {"Authorization": f"Bearer {key}"})
    assert empty == [{"city": "cimahi", "sensors": {"air": 0, "traffic": 0}, "districts": [], "bbox": None}]


def test_a_limited_key_cannot_move_a_sensor_to_another_city(cities_client: TestClient, two_cities: TwoCities) -> None:
    sensor_id = two_cities.of(CITY_A)[0]
    sensor = cities_client.get(f"/v1/sensors/{sensor_id}", headers=two_cities.header("a")).json()
    response = cities_client.put(
        f"/v1/sensors/{sensor_id}", json={**sensor, "city": CITY_B}, headers=two_cities.header("a")
    )
    assert_problem(response, 403)
    assert cities_client.get(f"/v1/sensors/{sensor_id}", headers=two_cities.header("a")).json() == sensor
    renamed = cities_client.put(
        f"/v1/sensors/{sensor_id}", json={**sensor, "name": "renamed"}, headers=two_cities.header("a")
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
