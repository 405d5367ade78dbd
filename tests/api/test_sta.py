"""`/sta/v1.1` through a real SensorThings client (frost-sta-client, from PyPI) against the served API, compared
with what `/v1` serves for the same sensors."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import frost_sta_client as fsc
import httpx
import psycopg
import pytest
from frost_sta_client.service.auth_handler import AuthHandler
from requests import PreparedRequest
from requests.auth import AuthBase

from livinglab.precision import round_to
from tests.api import seed
from tests.support import sensors
from tests.support.api import assert_problem, make_keys, serving
from tests.support.cities import seed_two_cities

pytestmark = [
    pytest.mark.integration,
    # frost-sta-client 1.1 calls a furl property that furl deprecates; the client's business, not ours.
    pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning"),
]

START = datetime(2026, 5, 1, tzinfo=UTC)
STATION = "sta-aq"
READINGS = 1050  # pages of 100 with a short last page
COUNTER = "sta-tc"
#: Stored degrees of saturation by hour (after START) with long binary tails or an exact half, and the figure
#: `/v1/traffic/segments` serves for each.
SATURATION_TAILS = {0: (0.22754120879120876, 0.23), 1: (0.125, 0.13), 2: (0.6749999999999999, 0.68)}


class _Bearer(AuthBase):
    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.key}"
        return request


class BearerAuth(AuthHandler):  # type: ignore[misc]
    """frost-sta-client speaks HTTP Basic; the platform's keys are bearer tokens."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def add_auth_header(self) -> AuthBase:
        return _Bearer(self.key)


@pytest.fixture(scope="module")
def platform(api_database_url: str) -> Iterator[dict[str, Any]]:
    rng = random.Random(11)
    with psycopg.connect(api_database_url) as conn:
        cities = seed_two_cities(conn)
        ids = sensors.register(
            conn,
            sensors.air(STATION, "jakarta", "Menteng", lat=-6.25, lon=106.85),
            sensors.traffic(COUNTER, "jakarta", "Menteng", lat=-6.2, lon=106.8),
        )
        key = ids[STATION]
        rows = [
            (key, 1, START + timedelta(seconds=60 * i, microseconds=rng.randrange(1_000_000)), rng.uniform(0, 300))
            for i in range(READINGS)
        ]
        rows += [(key, 2, START + timedelta(seconds=60 * i), float(i)) for i in range(20)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (sensor_key, quantity, ts, value, received_at) VALUES (%s, %s, %s, %s, now())",
                rows,
            )
        seed.ispu_rows(conn, key, seed.hours(START + timedelta(hours=1), 30), 50)
        seed.traffic_rows(conn, ids[COUNTER], seed.hours(START, 12), 662.5999999999999)  # DJ (flow + i) / 3000
        for hour, (stored, _) in SATURATION_TAILS.items():
            conn.execute(
                "UPDATE traffic_hourly SET degree_of_saturation = %s WHERE sensor_key = %s AND hour = %s",
                (stored, ids[COUNTER], START + timedelta(hours=hour)),
            )
        conn.commit()
    keys = make_keys(api_database_url)
    with serving(api_database_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        service = fsc.SensorThingsService(f"{base}/sta/v1.1", auth_handler=BearerAuth(keys.read))
        yield {
            "service": service,
            "client": client,
            "headers": keys.header(),
            "cities": cities,
            "url": api_database_url,
        }


def _v1_readings(platform: dict[str, Any], quantity: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    client, headers = platform["client"], platform["headers"]
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"quantity": quantity, "start": start.isoformat(), "end": end.isoformat(), "limit": 1000}
        page = client.get(
            f"/v1/sensors/{STATION}/readings", params={**params, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        ).json()  # fmt: skip
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_service_root_links_every_entity_set(platform: dict[str, Any]) -> None:
    body = platform["client"].get("/sta/v1.1", headers=platform["headers"]).json()
    names = [entry["name"] for entry in body["value"]]
    assert set(names) == {
        "Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "Observations",
        "ObservedProperties", "FeaturesOfInterest",
    }  # fmt: skip
    for entry in body["value"]:
        assert entry["url"].startswith("http://127.0.0.1:")
        assert platform["client"].get(entry["url"], headers=platform["headers"]).status_code == 200
    conformance = body["serverSettings"]["conformance"]
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data" in conformance
    assert not any("create-update-delete" in c for c in conformance)
    assert "$filter" in body["serverSettings"]["livinglab"]["queryOptions"]


def test_things_with_locations_expanded(platform: dict[str, Any]) -> None:
    things = list(platform["service"].things().query().expand("Locations").top(3).list())
    registry = {
        s["sensor_id"]: s
        for s in platform["client"]
        .get("/v1/sensors", params={"limit": 1000}, headers=platform["headers"])
        .json()["items"]
    }
    assert sorted(t.id for t in things) == sorted(registry)  # paged through @iot.nextLink, 3 at a time
    for thing in things:
        sensor = registry[thing.id]
        assert thing.name == thing.id
        assert thing.properties["city"] == sensor["city"]
        assert thing.properties["district"] == sensor["district"]
        (location,) = thing.locations.entities
        assert location.location["coordinates"] == [sensor["lon"], sensor["lat"]]


def test_datastreams_of_one_thing(platform: dict[str, Any]) -> None:
    thing = platform["service"].things().find(STATION)
    datastreams = {d.id: d for d in thing.get_datastreams().query().list()}
    assert set(datastreams) == {f"{STATION}:pm25", f"{STATION}:pm10", f"{STATION}:ispu"}
    pm25 = datastreams[f"{STATION}:pm25"]
    assert pm25.name == pm25.id
    assert pm25.unit_of_measurement.symbol == "ug/m3"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_observations_filtered_ordered_and_paged_equal_v1(platform: dict[str, Any], order: str) -> None:
    start, end = START + timedelta(hours=2), START + timedelta(hours=15)
    datastream = platform["service"].datastreams().find(f"{STATION}:pm25")
    query = (
        datastream.get_observations()
        .query()
        .filter(f"phenomenonTime ge {start.isoformat()} and phenomenonTime lt {end.isoformat()} and result gt 100")
        .orderby("phenomenonTime", order.upper())
        .top(100)
    )
    observations = list(query.list())
    expected = [r for r in _v1_readings(platform, "pm25", start, end) if r["value"] > 100]
    if order == "desc":
        expected.reverse()
    assert len(expected) > 300  # several pages
    assert [(datetime.fromisoformat(o.phenomenon_time), o.result) for o in observations] == [
        (datetime.fromisoformat(r["ts"]), r["value"]) for r in expected
    ]
    assert all(o.result_time == o.phenomenon_time for o in observations)


def test_next_links_are_absolute_and_every_page_is_full(platform: dict[str, Any]) -> None:
    client, headers = platform["client"], platform["headers"]
    url: str | None = f"/sta/v1.1/Datastreams('{STATION}:pm25')/Observations?$top=100&$count=true"
    sizes = []
    while url:
        body = client.get(url, headers=headers).json()
        assert body["@iot.count"] == READINGS
        sizes.append(len(body["value"]))
        for entity in body["value"]:
            assert entity["@iot.selfLink"].startswith("http://")
            assert client.get(entity["@iot.selfLink"], headers=headers).json()["@iot.id"] == entity["@iot.id"]
            break
        url = body.get("@iot.nextLink")
        if url:
            assert url.startswith("http://127.0.0.1:")
            assert "$skiptoken=" in url  # keyset, not OFFSET
    assert sizes == [100] * 10 + [50]


def test_skip_starts_a_keyset_walk(platform: dict[str, Any]) -> None:
    client, headers = platform["client"], platform["headers"]
    path = f"/sta/v1.1/Datastreams('{STATION}:pm10')/Observations"
    whole = [o["result"] for o in client.get(path, params={"$top": 1000}, headers=headers).json()["value"]]
    body = client.get(path, params={"$skip": 5, "$top": 4}, headers=headers).json()
    walked = [o["result"] for o in body["value"]]
    while "@iot.nextLink" in body:
        body = client.get(body["@iot.nextLink"], headers=headers).json()
        walked += [o["result"] for o in body["value"]]
    assert walked == whole[5:]


def test_ispu_datastream_equals_v1_history(platform: dict[str, Any]) -> None:
    datastream = platform["service"].datastreams().find(f"{STATION}:ispu")
    observations = list(datastream.get_observations().query().orderby("resultTime", "ASC").list())
    assert len(observations) == 30
    for observation in observations:
        label = datetime.fromisoformat(observation.result_time)
        v1 = (
            platform["client"]
            .get("/v1/air/ispu", params={"at": label.isoformat(), "limit": 1000}, headers=platform["headers"])
            .json()["items"]
        )
        (mine,) = [item for item in v1 if item["sensor_id"] == STATION]
        assert mine["window_end"] == label.isoformat().replace("+00:00", "Z")
        assert observation.result == mine["ispu"]
        start, end = observation.phenomenon_time.split("/")
        assert datetime.fromisoformat(end) == label
        assert datetime.fromisoformat(end) - datetime.fromisoformat(start) == timedelta(hours=24)
    raw = platform["client"].get(
        f"/sta/v1.1/Datastreams('{STATION}:ispu')/Observations", params={"$top": 1000}, headers=platform["headers"]
    )
    assert all(type(o["result"]) is int for o in raw.json()["value"])  # an integer index, as /v1 serves it


def test_degree_of_saturation_datastream_equals_v1(platform: dict[str, Any]) -> None:
    """The hourly DJ Observations carry `/v1/traffic/segments`' figure, rounded as it is (two decimals, half away
    from zero on the decimal writing); `$filter` and an Observation by id see the same figure."""
    client, headers = platform["client"], platform["headers"]
    path = f"/sta/v1.1/Datastreams('{COUNTER}:degree_of_saturation')/Observations"
    observations = client.get(path, params={"$orderby": "phenomenonTime asc"}, headers=headers).json()["value"]
    assert len(observations) == 12
    results = {}
    for observation in observations:
        start, end = observation["phenomenonTime"].split("/")
        assert observation["resultTime"] == end
        v1 = client.get("/v1/traffic/segments", params={"at": start, "limit": 1000}, headers=headers).json()
        (mine,) = [item for item in v1["items"] if item["sensor_id"] == COUNTER]
        assert mine["hour"] == start
        assert observation["result"] == mine["degree_of_saturation"]
        assert observation["result"] == round_to(observation["result"], 2)
        assert client.get(observation["@iot.selfLink"], headers=headers).json()["result"] == observation["result"]
        results[datetime.fromisoformat(start)] = observation["result"]
    for hour, (stored, served) in SATURATION_TAILS.items():
        assert results[START + timedelta(hours=hour)] == served != stored
    assert results[START + timedelta(hours=11)] == 0.22  # (662.6 + 11) / 3000 = 0.22453...
    hits = client.get(
        "/sta/v1.1/Observations",
        params={"$filter": f"Datastream/id eq '{COUNTER}:degree_of_saturation' and result eq 0.23"},
        headers=headers,
    ).json()["value"]
    assert [h["resultTime"] for h in hits] == ["2026-05-01T01:00:00Z"]


def test_expand_with_nested_options(platform: dict[str, Any]) -> None:
    client, headers = platform["client"], platform["headers"]
    body = client.get(
        f"/sta/v1.1/Things('{STATION}')",
        params={
            "$select": "id,name",
            "$expand": "Datastreams($filter=ObservedProperty/id eq 'pm25';$expand=Observations($top=2;"
            "$orderby=phenomenonTime desc;$select=result),ObservedProperty)",
        },
        headers=headers,
    ).json()
    assert set(body) == {"@iot.id", "@iot.selfLink", "name", "Datastreams"}
    (datastream,) = body["Datastreams"]
    assert datastream["ObservedProperty"]["@iot.id"] == "pm25"
    assert len(datastream["Observations"]) == 2
    assert datastream["Observations@iot.nextLink"].startswith("http://127.0.0.1:")
    last = _v1_readings(platform, "pm25", START, START + timedelta(days=2))[-2:]
    assert [o["result"] for o in datastream["Observations"]] == [r["value"] for r in reversed(last)]


def test_navigation_paths_and_filters_over_paths(platform: dict[str, Any]) -> None:
    client, headers = platform["client"], platform["headers"]
    thing = client.get(f"/sta/v1.1/Datastreams('{STATION}:pm25')/Thing", headers=headers).json()
    assert thing["@iot.id"] == STATION
    ids = client.get(
        "/sta/v1.1/Datastreams",
        params={"$filter": f"Thing/id eq '{STATION}' and Thing/properties/city eq 'jakarta'", "$select": "id"},
        headers=headers,
    ).json()["value"]
    assert {d["@iot.id"] for d in ids} == {f"{STATION}:pm25", f"{STATION}:pm10", f"{STATION}:ispu"}
    observations = client.get(
        "/sta/v1.1/Observations",
        params={"$filter": f"Datastream/id eq '{STATION}:pm10' and result lt 3", "$orderby": "result desc"},
        headers=headers,
    ).json()["value"]
    assert [o["result"] for o in observations] == [2.0, 1.0, 0.0]
    for series in ("pm25", "ispu"):  # an Observation by id is one index probe in its Datastream's table
        (first,) = client.get(
            f"/sta/v1.1/Datastreams('{STATION}:{series}')/Observations", params={"$top": 1}, headers=headers
        ).json()["value"]
        assert client.get(first["@iot.selfLink"], headers=headers).json() == first
    for bad in (f"{STATION}:pm25:not-a-time", f"{STATION}:pm25", f"{STATION}:pm25:2026-05-01T00:00:00"):
        assert_problem(client.get(f"/sta/v1.1/Observations('{bad}')", headers=headers), 404)
    name = client.get(f"/sta/v1.1/Things('{STATION}')/name/$value", headers=headers)
    assert name.text == STATION


def test_a_city_limited_key_sees_its_city_only(platform: dict[str, Any]) -> None:
    client, cities = platform["client"], platform["cities"]
    headers = cities.header("a")
    things = client.get("/sta/v1.1/Things", params={"$top": 1000}, headers=headers).json()["value"]
    assert {t["properties"]["city"] for t in things} == {"jakarta"}
    other = cities.of("bandung")[0]
    assert client.get(f"/sta/v1.1/Things('{other}')", headers=headers).status_code == 404
    assert client.get(f"/sta/v1.1/Datastreams('{other}:pm25')/Observations", headers=headers).status_code == 404
    observations = client.get("/sta/v1.1/Observations", params={"$top": 1000}, headers=headers).json()
    assert observations["value"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"$top": "1001"}, "$top"),
        ({"$top": "-1"}, "$top"),
        ({"$resultFormat": "dataArray"}, "$resultFormat"),
        ({"$filter": "st_within(location, geography'POINT(1 2)')"}, "st_within"),
        ({"$filter": "result eq 'x'"}, "compares"),
        ({"$filter": "nosuch eq 1"}, "nosuch"),
        ({"$orderby": "nosuch"}, "nosuch"),
        ({"$select": "nosuch"}, "nosuch"),
        ({"$expand": "Nosuch"}, "Nosuch"),
        ({"$filter": "result gt 1e300 mul 1e300", "$select": "nosuch2"}, "nosuch2"),  # even when no row matches
        ({"$expand": "Datastream($expand=Thing($select=nosuch3))"}, "nosuch3"),
        ({"$filter": "result add 1e300 mul 1e300 gt 1"}, "outside the range"),  # a double overflow
        ({"$skiptoken": "bm9wZQ"}, "skiptoken"),
    ],
)
def test_unsupported_options_are_400_naming_them(platform: dict[str, Any], params: dict[str, str], words: str) -> None:
    response = platform["client"].get("/sta/v1.1/Observations", params=params, headers=platform["headers"])
    assert words in assert_problem(response, 400)["detail"]
