"""The city rule over every route of the OpenAPI document: a key limited to Jakarta gets nothing of Bandung.

The checks are built from the document the app serves, so a route added later is checked without editing this
file, and fails here if it leaks another city's data:

- every list: a limited key walks only its city's rows, page by page; a key without cities sees both cities;
- every filter that names a Bandung object (`?city=bandung`, `?sensor_id=<a Bandung sensor>`): an empty list;
- every cursor, taken among Bandung's rows by a key that sees them: what follows is Jakarta's rows only;
- every route with a path parameter, given Bandung's object: 404 for every method, and the object unchanged;
  given Jakarta's object, GET answers 200;
- every create whose body names a city: 403 in Bandung, 201 in Jakarta;
- every event stream: Jakarta's events only, live and when resumed; a key without cities gets every event.

A list's rows must say whose they are: a `city` field, a `cities` field (keys), or a `sensor_id` (field, or CSV
column) of a seeded sensor. A path parameter is filled from the list one level up from it, by its own name,
unless `OBJECT_LISTS` says otherwise. Where this file cannot tell, it fails saying what to add.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from api import ApiSettings, create_app
from api.access import OPEN_PATHS
from tests.support.api import SseReader, serving
from tests.support.cities import CITY_A, CITY_B, TwoCities, publish_city_events, seed_two_cities

pytestmark = pytest.mark.integration

_DOCUMENT = create_app(ApiSettings(database_url="postgresql://unused")).openapi()
#: Path parameters whose objects are not found by the default rule: parameter -> (list path, item field).
OBJECT_LISTS: dict[str, tuple[str, str]] = {"rejected_id": ("/v1/rejected", "id")}
#: Query parameters of lists that name an object of a city (the value of city B's object is tried).
FILTERS = ("city", "sensor_id")
#: Every city: a key item whose `cities` is empty.
EVERY = None


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    for variant in schema.get("anyOf", []):
        if variant.get("type") != "null":
            return _resolve(variant)
    return schema


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", [])}

    @property
    def path_params(self) -> list[str]:
        return [n for n, p in self.parameters.items() if p["in"] == "path"]

    def required_query(self) -> dict[str, str]:
        """Values for required query parameters: the first of an enumeration."""
        values = {}
        for name, p in self.parameters.items():
            if p["in"] == "query" and p.get("required"):
                enum = _resolve(p.get("schema", {})).get("enum")
                assert enum, f"{self.label}: no value known for required parameter {name!r}; teach required_query"
                values[name] = str(enum[0])
        return values

    @property
    def success(self) -> dict[str, Any]:
        responses = self.spec["responses"]
        return next((responses[s] for s in ("200", "201", "202", "204") if s in responses), {})

    @property
    def is_stream(self) -> bool:
        return "text/event-stream" in self.success.get("content", {})

    @property
    def is_list(self) -> bool:
        content = self.success.get("content", {})
        if "text/csv" in content:
            return True
        schema = _resolve(content.get("application/json", {}).get("schema", {}))
        return {"items", "next_cursor"} <= set(schema.get("properties", {}))

    @property
    def body_properties(self) -> set[str]:
        body = self.spec.get("requestBody", {}).get("content", {}).get("application/json")
        return set(_resolve(body["schema"]).get("properties", {})) if body else set()


_OPERATIONS = [
    Operation(method, path, spec)
    for path, methods in _DOCUMENT["paths"].items()
    for method, spec in methods.items()
    if path not in OPEN_PATHS
]
LISTS = [op for op in _OPERATIONS if op.method == "get" and not op.path_params and op.is_list]
STREAMS = [op for op in _OPERATIONS if op.method == "get" and op.is_stream]
OBJECTS = [op for op in _OPERATIONS if op.path_params]
CREATES = [
    op for op in _OPERATIONS if op.method == "post" and not op.path_params and op.body_properties & {"city", "cities"}
]
FILTERED = [(op, name) for op in LISTS for name in FILTERS if name in op.parameters]
PAGED = [op for op in LISTS if "cursor" in op.parameters]


def _ids(ops: list[Operation]) -> list[str]:
    return [op.label for op in ops]


# ---- the platform ----------------------------------------------------------------------------------------------


@dataclass
class Platform:
    client: httpx.Client
    seeded: TwoCities
    url: str

    def get(self, path: str, label: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.seeded.header(label))

    def owners(self, item: dict[str, Any]) -> frozenset[str | None] | None:
        """The cities a row belongs to (None: every city)."""
        if "city" in item:
            return frozenset({item["city"]})
        if "cities" in item:
            return frozenset(item["cities"]) or EVERY
        if "sensor_id" in item:
            assert item["sensor_id"] in self.seeded.sensors, f"row of an unseeded sensor: {item}"
            return frozenset({self.seeded.sensors[item["sensor_id"]]})
        raise AssertionError(f"cannot tell whose row this is (no city, cities or sensor_id): {item}")

    def page(self, op: Operation, label: str, **params: Any) -> tuple[list[dict[str, Any]], str | None]:
        response = self.get(op.path, label, **op.required_query(), **params)
        assert response.status_code == 200, f"{op.label} {params}: {response.status_code} {response.text}"
        if response.headers["content-type"].startswith("text/csv"):
            return list(csv.DictReader(io.StringIO(response.text))), None
        body = response.json()
        return body["items"], body["next_cursor"]

    def walk(self, op: Operation, label: str, **params: Any) -> Iterator[tuple[dict[str, Any], str | None]]:
        """Every row of a list with the cursor that points right after it (one row per page where pages exist)."""
        cursor = None
        for _ in range(1000):
            page_params = {**params, **({"limit": 1} if "limit" in op.parameters else {})}
            items, cursor = self.page(op, label, **page_params, **({"cursor": cursor} if cursor else {}))
            for item in items:
                yield item, cursor
            if cursor is None:
                return
            assert items, f"{op.label}: a page with a next_cursor must not be empty"
        raise AssertionError(f"{op.label}: pagination did not end")

    def rows(self, op: Operation, label: str, **params: Any) -> list[dict[str, Any]]:
        return [item for item, _ in self.walk(op, label, **params)]


@pytest.fixture(scope="module")
def platform(api_database_url: str) -> Iterator[Platform]:
    with psycopg.connect(api_database_url) as conn:
        seeded = seed_two_cities(conn)
    with serving(api_database_url) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Platform(client, seeded, api_database_url)


def _visible_to_a(owners: frozenset[str | None] | None) -> bool:
    return owners is not EVERY and owners <= {CITY_A}


# ---- the checks -------------------------------------------------------------------------------------------------


def test_the_matrix_checks_every_route() -> None:
    checked = {op.label for op in [*LISTS, *STREAMS, *OBJECTS, *CREATES]}
    unknown = [op.label for op in _OPERATIONS if op.label not in checked]
    assert not unknown, f"routes this test cannot check (teach it, or make them lists/objects): {unknown}"
    assert {"GET /v1/sensors", "GET /v1/rejected", "GET /v1/keys"} <= set(_ids(LISTS))
    for op in LISTS:
        schema = _resolve(op.success.get("content", {}).get("application/json", {}).get("schema", {}))
        if schema:
            item = _resolve(schema["properties"]["items"]["items"])
            assert {"city", "cities", "sensor_id"} & set(item["properties"]), f"{op.label}: rows say no city"


@pytest.mark.parametrize("op", LISTS, ids=_ids(LISTS))
def test_a_list_gives_a_limited_key_its_city_only(platform: Platform, op: Operation) -> None:
    limited = [platform.owners(item) for item in platform.rows(op, "a")]
    assert limited, f"{op.label}: the seed holds no row of {CITY_A} for this list; seed some (tests/support/cities.py)"
    leaked = [owners for owners in limited if not _visible_to_a(owners)]
    assert not leaked, f"{op.label}: a key limited to {CITY_A} got rows of {leaked}"
    everything = [platform.owners(item) for item in platform.rows(op, "all")]
    assert any(o is not EVERY and CITY_A in o for o in everything)
    assert any(o is not EVERY and CITY_B in o for o in everything), (
        f"{op.label}: a key without cities sees no row of {CITY_B}; seed some (tests/support/cities.py)"
    )


@pytest.mark.parametrize(("op", "name"), FILTERED, ids=[f"{op.label}?{name}" for op, name in FILTERED])
def test_a_filter_naming_city_bs_object_gives_an_empty_list(platform: Platform, op: Operation, name: str) -> None:
    value = CITY_B if name == "city" else platform.seeded.of(CITY_B)[0]
    items, cursor = platform.page(op, "a", **{name: value})
    assert (items, cursor) == ([], None), f"{op.label}?{name}={value} gave a key limited to {CITY_A}: {items}"
    # The filter itself works: a key without cities gets Bandung's rows from it.
    unlimited = [platform.owners(item) for item in platform.rows(op, "all", **{name: value})]
    assert unlimited, f"{op.label}?{name}={value}: no rows for a key without cities; seed some"
    assert all(o == {CITY_B} for o in unlimited)


@pytest.mark.parametrize("op", PAGED, ids=_ids(PAGED))
def test_cursors_among_city_bs_rows_lead_to_city_as_rows_only(platform: Platform, op: Operation) -> None:
    into_b = [cursor for item, cursor in platform.walk(op, "all") if cursor and platform.owners(item) == {CITY_B}]
    assert into_b, f"{op.label}: no cursor falls among {CITY_B}'s rows; seed more rows"
    for cursor in into_b:
        items, _ = platform.page(op, "a", cursor=cursor)
        leaked = [item for item in items if not _visible_to_a(platform.owners(item))]
        assert not leaked, f"{op.label}: after a cursor among {CITY_B}'s rows, a limited key got {leaked}"


def _object_ids(platform: Platform, op: Operation, param: str) -> dict[str, str]:
    """The id of one object of each city for a path parameter."""
    list_path, field = OBJECT_LISTS.get(param) or (op.path.split("/{" + param + "}")[0], param)
    source = next((o for o in LISTS if o.path == list_path), None)
    assert source is not None, f"{op.label}: no list at {list_path} to find {param!r} in; add it to OBJECT_LISTS"
    found: dict[str, str] = {}
    for item in platform.rows(source, "all"):
        owners = platform.owners(item)
        assert field in item, f"{op.label}: rows of {list_path} have no {field!r}; add {param!r} to OBJECT_LISTS"
        if owners is not EVERY and len(owners) == 1:
            found.setdefault(next(iter(owners)) or "", str(item[field]))
    assert {CITY_A, CITY_B} <= set(found), f"{op.label}: {list_path} holds no object of each city; seed some"
    return found


def _object_path(op: Operation, values: dict[str, str]) -> str:
    path = op.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _object_get(op: Operation) -> Operation | None:
    """The GET of the object a path names (the path up to its last parameter)."""
    last = op.path_params[-1]
    path = op.path[: op.path.index("{" + last + "}") + len(last) + 2]
    return next((o for o in OBJECTS if o.method == "get" and o.path == path), None)


def _snapshot(platform: Platform, op: Operation, ids: dict[str, dict[str, str]]) -> Any:
    """What a key without cities sees of city B's object: its GET, else its row in the list it came from."""
    getter = _object_get(op)
    if getter is not None:
        response = platform.get(_object_path(getter, {p: f[CITY_B] for p, f in ids.items()}), "all")
        return response.status_code, response.json()
    param = op.path_params[-1]
    list_path, field = OBJECT_LISTS.get(param) or (op.path.split("/{" + param + "}")[0], param)
    source = next(o for o in LISTS if o.path == list_path)
    return [item for item in platform.rows(source, "all") if str(item[field]) == ids[param][CITY_B]]


@pytest.mark.parametrize("op", OBJECTS, ids=_ids(OBJECTS))
def test_an_object_of_city_b_is_not_found(platform: Platform, op: Operation) -> None:
    ids = {param: _object_ids(platform, op, param) for param in op.path_params}
    path_b = _object_path(op, {param: found[CITY_B] for param, found in ids.items()})
    before = _snapshot(platform, op, ids)
    body = None
    if op.spec.get("requestBody", {}).get("required"):
        assert isinstance(before, tuple), f"{op.label}: cannot build a body without a GET of its object"
        body = {k: v for k, v in before[1].items() if k in op.body_properties}
    response = platform.client.request(
        op.method, path_b, params=op.required_query(), json=body, headers=platform.seeded.header("a")
    )
    assert response.status_code == 404, f"{op.label} of {CITY_B}'s object: {response.status_code} {response.text}"
    assert response.json()["detail"].startswith("no "), "worded as for an object that does not exist"
    assert _snapshot(platform, op, ids) == before, f"{op.label}: {CITY_B}'s object changed"
    if op.method == "get":
        path_a = _object_path(op, {param: found[CITY_A] for param, found in ids.items()})
        response = platform.get(path_a, "a", **op.required_query())
        assert response.status_code == 200, f"{op.label} of {CITY_A}'s object: {response.text}"


@pytest.mark.parametrize("op", CREATES, ids=_ids(CREATES))
def test_creating_in_city_b_is_forbidden(platform: Platform, op: Operation) -> None:
    source = next((o for o in LISTS if o.path == op.path), None)
    assert source is not None, f"{op.label}: no list at the same path to model a body on"
    models: dict[str, dict[str, Any]] = {}
    for item in platform.rows(source, "all"):
        owners = platform.owners(item)
        if owners is not EVERY and len(owners) == 1:
            models.setdefault(next(iter(owners)) or "", item)
    for city, expected in ((CITY_B, 403), (CITY_A, 201)):
        body = {k: v for k, v in models[city].items() if k in op.body_properties}
        for name in body:
            if name.endswith("_id") and body[name] is not None:  # a new id; a reference left empty stays empty
                body[name] = f"new-{uuid.uuid4().hex[:8]}"
        response = platform.client.post(op.path, json=body, headers=platform.seeded.header("a"))
        assert response.status_code == expected, f"{op.label} in {city}: {response.status_code} {response.text}"


@pytest.mark.parametrize("op", STREAMS, ids=_ids(STREAMS))
def test_a_stream_carries_a_limited_keys_events_only(platform: Platform, op: Operation) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    # Both streams are open before the events are published, so both read them live.
    with (
        platform.client.stream("GET", op.path, headers=platform.seeded.header("a")) as limited_response,
        platform.client.stream("GET", op.path, headers=platform.seeded.header("all")) as all_response,
    ):
        readers = {"a": SseReader(limited_response), "all": SseReader(all_response)}
        for reader in readers.values():
            assert reader.next_comment().startswith("connected")
        ids = publish_city_events(platform.url, marker)
        fence = str(ids[f"{CITY_A} again"])
        seen: dict[str, list[str]] = {"a": [], "all": []}
        for label, reader in readers.items():
            while fence not in seen[label]:
                seen[label].append(reader.next_message()["id"])
    assert seen["a"] == [str(ids[CITY_A]), fence], f"a key limited to {CITY_A} got {seen['a']} of {ids}"
    assert seen["all"] == [str(i) for i in ids.values()]
    # Resumed from before Bandung's event: the missed events come from the table, filtered alike.
    resume = {**platform.seeded.header("a"), "Last-Event-ID": str(ids[CITY_A] - 1)}
    with platform.client.stream("GET", op.path, headers=resume) as response:
        reader = SseReader(response)
        assert [reader.next_message()["id"] for _ in range(2)] == [str(ids[CITY_A]), fence]
