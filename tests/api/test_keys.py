"""API keys through the API (`/v1/keys`) and the keys a city-limited key may make, see and revoke."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.api import assert_problem, walk
from tests.support.cities import CITY_A, CITY_B, TwoCities

pytestmark = pytest.mark.integration


def _make(cities_client: TestClient, two_cities: TwoCities, label: str, **body: object) -> dict[str, object]:
    response = cities_client.post("/v1/keys", json=body, headers=two_cities.header(label))
    assert response.status_code == 201, response.text
    made: dict[str, object] = response.json()
    return made


def test_a_new_key_is_shown_once_and_works_at_once(
    cities_client: TestClient, two_cities: TwoCities, api_database_url: str
) -> None:
    made = _make(cities_client, two_cities, "all", scope="read", cities=[CITY_B, CITY_B], name="bandung dashboard")
    assert {"key_id", "key", "scope", "cities", "name"} <= set(made)
    assert (made["scope"], made["cities"], made["name"]) == ("read", [CITY_B], "bandung dashboard")
    key = str(made["key"])
    assert made["prefix"] == key[:8]
    with psycopg.connect(api_database_url) as conn:
        stored = conn.execute("SELECT key_hash, cities FROM api_keys WHERE id = %s", (made["key_id"],)).fetchone()
    assert stored is not None
    assert bytes(stored[0]) == hashlib.sha256(key.encode()).digest()
    assert stored[1] == [CITY_B]
    listed = walk(cities_client, "/v1/keys", {}, two_cities.header("all"))
    assert all("key" not in item for item in listed)
    assert [i["cities"] for i in listed if i["key_id"] == made["key_id"]] == [[CITY_B]]
    sensors = walk(cities_client, "/v1/sensors", {}, {"Authorization": f"Bearer {key}"})
    assert sensors
    assert {s["city"] for s in sensors} == {CITY_B}


def test_a_limited_key_makes_only_keys_within_its_scope_and_cities(
    cities_client: TestClient, two_cities: TwoCities
) -> None:
    made = _make(cities_client, two_cities, "a", scope="sensors:write", cities=[CITY_A])
    assert made["created_by"] is not None
    for body in (
        {"scope": "read", "cities": []},  # every city
        {"scope": "read", "cities": [CITY_B]},
        {"scope": "read", "cities": [CITY_A, CITY_B]},
    ):
        assert_problem(cities_client.post("/v1/keys", json=body, headers=two_cities.header("a")), 403)
    # A read key makes no keys at all; an admin key of two cities may make one of either.
    assert_problem(cities_client.post("/v1/keys", json={"scope": "read"}, headers=two_cities.header("both")), 403)
    for bad in ({"scope": "owner"}, {"scope": "read", "cities": ["Bad City"]}, {"scope": "read", "extra": 1}):
        assert_problem(cities_client.post("/v1/keys", json=bad, headers=two_cities.header("all")), 422)


def test_a_limited_key_lists_and_revokes_only_keys_within_its_cities(
    cities_client: TestClient, two_cities: TwoCities
) -> None:
    limited = walk(cities_client, "/v1/keys", {"limit": 2}, two_cities.header("a"))
    assert limited
    assert all(item["cities"] and set(item["cities"]) <= {CITY_A} for item in limited)
    everything = walk(cities_client, "/v1/keys", {"limit": 2}, two_cities.header("all"))
    unseen = [item for item in everything if item["key_id"] not in {i["key_id"] for i in limited}]
    # Unseen: keys of every city, of the other city, and of both.
    assert {(), (CITY_B,), tuple(sorted((CITY_A, CITY_B)))} <= {tuple(i["cities"]) for i in unseen}
    for item in unseen:
        assert_problem(cities_client.delete(f"/v1/keys/{item['key_id']}", headers=two_cities.header("a")), 404)
    assert len(walk(cities_client, "/v1/keys", {}, two_cities.header("all"))) == len(everything)


def test_a_revoked_key_stops_at_once(cities_client: TestClient, two_cities: TwoCities) -> None:
    made = _make(cities_client, two_cities, "a", scope="read", cities=[CITY_A])
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert cities_client.get("/v1/sensors", headers=headers).status_code == 200  # now in the key cache
    assert cities_client.delete(f"/v1/keys/{made['key_id']}", headers=two_cities.header("a")).status_code == 204
    assert_problem(cities_client.get("/v1/sensors", headers=headers), 401)
    assert_problem(cities_client.delete(f"/v1/keys/{made['key_id']}", headers=two_cities.header("a")), 404)
    assert made["key_id"] not in {i["key_id"] for i in walk(cities_client, "/v1/keys", {}, two_cities.header("all"))}
