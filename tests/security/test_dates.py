"""Every bad date answers a 400 problem detail, on every route that takes one: a property test generated from the
OpenAPI document, so a route added later with a date parameter is covered without editing this file.

Dates are drawn over the whole calendar (years 1 to 9999, offsets up to +-23:59, where converting to UTC overflows
at both ends), as Unix numbers and as arbitrary text. An oracle parses each value as the API's date type does: what
does not parse, has no offset, or lies outside `[EARLIEST, LATEST)` must be a 400 problem; anything else may be
answered as the route sees fit (a range over its cap is a 400 too), but never with a server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from api import ApiSettings, create_app
from api.params import EARLIEST, LATEST
from livinglab.storage.keys import Scope, create_key
from tests.support.api import serving
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

_DOCUMENT = create_app(ApiSettings(database_url="postgresql://unused")).openapi()
_PATH_VALUES = {"sensor_id": "aq-1"}
_DATETIME = TypeAdapter(datetime)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is_date(schema: dict[str, Any]) -> bool:
    schema = _resolve(schema)
    return schema.get("format") == "date-time" or any(_is_date(s) for s in schema.get("anyOf", []))


def _example(name: str, schema: dict[str, Any]) -> str:
    """A valid value for a required parameter that is not under test."""
    schema = _resolve(schema)
    if name in _PATH_VALUES:
        return _PATH_VALUES[name]
    if "enum" in schema:
        return str(schema["enum"][0])
    options = [s for s in schema.get("anyOf", []) if _resolve(s).get("type") != "null"]
    if options:
        return _example(name, options[0])
    return "1" if schema.get("type") == "integer" else "x"


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for path, item in _DOCUMENT["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if _is_date(parameter["schema"]):
                    cases.append((method.upper(), path, parameter["name"]))
    return sorted(cases)


CASES = _cases()


def _requires_400(text: str) -> bool:
    """The oracle: does `text` fail as a date the API takes?"""
    try:
        value = _DATETIME.validate_python(text)
    except ValidationError:
        return True
    if value.tzinfo is None:
        return True
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return True
    return not EARLIEST <= utc < LATEST


_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
_calendar = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=_offsets)
_edges = st.sampled_from(
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:00:00Z",
        "2199-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2026-11-28T10:00:00",
        "2026-02-30T00:00:00Z",
        "2026-11-28T24:00:00Z",
        "+10000-01-01T00:00:00Z",
        "1e400",
        "-1e20",
        "nan",
        "",
        "2026-11-28",
    ]
)
DATES = st.one_of(
    _edges,
    _calendar.map(lambda d: d.isoformat()),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
)


@pytest.fixture(scope="module")
def database(api_database_url: str) -> str:
    return api_database_url


@pytest.fixture(scope="module")
def admin_headers(database: str) -> dict[str, str]:
    with psycopg.connect(database) as conn:
        register(conn, air("aq-1"))
        key = create_key(conn, Scope.ADMIN, name="dates")
        conn.commit()
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def base_url(database: str) -> Iterator[str]:
    with serving(database) as base:
        yield base


def test_the_document_has_date_parameters() -> None:
    assert {("GET", "/v1/air/ispu", "at"), ("GET", "/v1/sensors/{sensor_id}/readings", "start")} <= set(CASES)


@pytest.mark.parametrize(("method", "path", "parameter"), CASES, ids=[f"{m} {p} {n}" for m, p, n in CASES])
def test_every_bad_date_answers_400(
    base_url: str, admin_headers: dict[str, str], method: str, path: str, parameter: str
) -> None:
    operation = _DOCUMENT["paths"][path][method.lower()]
    fixed: dict[str, str] = {}
    url = path
    for p in operation.get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", _example(p["name"], p["schema"]))
        elif p.get("required") and p["name"] != parameter:
            fixed[p["name"]] = _example(p["name"], p["schema"])

    with httpx.Client(base_url=base_url, timeout=10, headers=admin_headers) as client:

        @given(value=DATES)
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(value: str) -> None:
            response = client.request(method, url, params={**fixed, parameter: value})
            assert response.status_code < 500, (value, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json"), response.text
            if _requires_400(value):
                assert response.status_code == 400, (value, response.status_code, response.text)

        check()
