"""Property-based requests generated from the OpenAPI document: no server error, no response off its schema.

The document comes from the app itself (no database needed to build it); the requests go to a real server over
HTTP, with an admin key, against a database that also holds rows, so the generated requests reach the queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import ApiSettings, create_app
from tests.api import seed
from tests.support.api import Keys, serving
from tests.support.sensors import air, register, traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_SCHEMA = schemathesis.openapi.from_dict(create_app(ApiSettings(database_url="postgresql://unused")).openapi())
# The stream never ends by itself; it has its own tests.
# What the answers must satisfy. Left out on purpose: "positive data acceptance", since a schema-valid request can
# still be refused with a documented 400 (an unknown cursor, a range over the cap, an id that is taken).
_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_OPERATIONS = {op.label: op for op in (r.ok() for r in _SCHEMA.get_all_operations()) if op.path != "/v1/stream"}


@pytest.fixture(scope="module")
def base_url(api_database_url: str) -> Iterator[str]:
    with psycopg.connect(api_database_url) as conn:
        ids = register(conn, [air("a", "jakarta", "Menteng"), traffic("b", "jakarta", "Gambir")])
        hours = seed.hours(datetime.now(UTC).replace(minute=0, second=0, microsecond=0), 1)
        seed.ispu_rows(conn, ids["a"], hours, 40)
        seed.aqi_rows(conn, ids["a"], hours, 40)
        seed.traffic_rows(conn, ids["b"], hours, 900.0)
        conn.commit()
    with serving(api_database_url) as base:
        yield base


@pytest.mark.parametrize("label", sorted(_OPERATIONS))
def test_no_server_errors_and_responses_match_the_schema(label: str, base_url: str, keys: Keys) -> None:
    operation = _OPERATIONS[label]

    @given(data=st.data())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(base_url=base_url, headers=keys.header("admin"), checks=_CHECKS, timeout=10)

    check()
