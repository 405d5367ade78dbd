"""Service levels: whole days from the daily rollups, partial days at the edges from the hourly tallies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from api.routes.service_levels import whole_days
from livinglab.precision import round_field
from livinglab.storage.keys import Scope, create_key
from tests.support.api import Keys, api_client, walk

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)
DISTRICTS = [("jakarta", "Menteng"), ("jakarta", "Gambir"), ("bandung", "Coblong")]
SERVICES = ("air", "traffic", "data")


@pytest.fixture(scope="module")
def tallies(api_database_url: str) -> Iterator[dict[tuple[str, str, str, datetime], tuple[float, float]]]:
    rng = random.Random(5)
    hourly: dict[tuple[str, str, str, datetime], tuple[float, float]] = {}
    for city, district in DISTRICTS:
        for service in SERVICES:
            for h in range(40 * 24):
                denominator = float(rng.randint(0, 12))
                numerator = float(rng.randint(0, int(denominator)))
                hourly[(city, district, service, DAY0 + timedelta(hours=h))] = (numerator, denominator)
    with psycopg.connect(api_database_url) as conn:
        with conn.cursor().copy(
            "COPY service_hourly (city, district, service, period_start, numerator, denominator) FROM STDIN"
        ) as copy:
            for (city, district, service, start), (n, d) in hourly.items():
                copy.write_row((city, district, service, start, n, d))
        conn.execute(
            "INSERT INTO service_daily (city, district, service, period_start, numerator, denominator)"
            " SELECT city, district, service, date_trunc('day', period_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
            " sum(numerator), sum(denominator) FROM service_hourly GROUP BY 1, 2, 3, 4"
        )
        # Retention has already dropped the hourly tallies of day 3; its daily rollup remains.
        conn.execute(
            "DELETE FROM service_hourly WHERE period_start >= %s AND period_start < %s",
            (DAY0 + timedelta(days=3), DAY0 + timedelta(days=4)),
        )
        conn.commit()
    return hourly


def _expected(hourly, start: datetime, end: datetime) -> dict[tuple[str, str, str], tuple[float, float]]:
    sums: dict[tuple[str, str, str], list[float]] = {}
    for (city, district, service, h), (n, d) in hourly.items():
        if start <= h < end:
            s = sums.setdefault((city, district, service), [0.0, 0.0])
            s[0] += n
            s[1] += d
    return {k: (v[0], v[1]) for k, v in sums.items()}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (DAY0 + timedelta(hours=10, minutes=30), DAY0 + timedelta(days=30, hours=7)),
        (DAY0, DAY0 + timedelta(days=30)),
        (DAY0 + timedelta(days=2, hours=5), DAY0 + timedelta(days=2, hours=9)),
        (DAY0 + timedelta(days=1, hours=23), DAY0 + timedelta(days=5, hours=1)),
    ],
)
def test_achieved_is_the_sum_over_the_range(client, keys: Keys, tallies, start: datetime, end: datetime) -> None:
    items = walk(
        client, "/v1/service-levels", {"start": start.isoformat(), "end": end.isoformat(), "limit": 4}, keys.header()
    )
    expected = _expected(tallies, start, end)
    assert [(i["city"], i["district"], i["service"]) for i in items] == sorted(expected)
    targets = {"air": 0.90, "traffic": 0.80, "data": 0.95}
    indicators = {"air": "ispu_at_most_100_share", "traffic": "los_target_met_share", "data": "completeness"}
    for item in items:
        n, d = expected[(item["city"], item["district"], item["service"])]
        assert (item["numerator"], item["denominator"]) == (n, d)
        assert item["achieved"] == round_field("achieved", n / d)  # served at its precision
        assert item["target"] == targets[item["service"]]
        assert item["indicator"] == indicators[item["service"]]
        assert item["compliant"] is (n / d >= targets[item["service"]])


def test_filters(client, keys: Keys, tallies) -> None:
    params = {"start": DAY0.isoformat(), "end": (DAY0 + timedelta(days=7)).isoformat()}
    jakarta = walk(client, "/v1/service-levels", {**params, "city": "jakarta"}, keys.header())
    assert {(i["district"], i["service"]) for i in jakarta} == {(d, s) for c, d in DISTRICTS[:2] for s in SERVICES}
    air = walk(client, "/v1/service-levels", {**params, "service": "air", "district": "Coblong"}, keys.header())
    assert [(i["city"], i["service"]) for i in air] == [("bandung", "air")]
    assert (
        walk(
            client,
            "/v1/service-levels",
            {"start": "2025-01-01T00:00:00Z", "end": "2025-01-08T00:00:00Z"},
            keys.header(),
        )
        == []
    )


def test_every_combination_of_filters_on_a_connection_that_prepares_them(api_database_url: str, tallies) -> None:
    """Each combination of filters is its own query text, prepared by the connection after its fifth use; walked
    eight times over on a single uncached connection, each answers the sums of the rows it keeps."""
    start, end = DAY0 + timedelta(hours=7), DAY0 + timedelta(days=9, hours=3)
    expected = _expected(tallies, start, end)
    with psycopg.connect(api_database_url) as conn:
        every_city = create_key(conn, Scope.READ, name="levels-every-city")
        bandung_only = create_key(conn, Scope.READ, name="levels-bandung", cities=["bandung"])
        conn.commit()
    combinations = itertools.product(
        (every_city, bandung_only), (None, "jakarta", "bandung"), (None, "Coblong"), (None, "traffic"), (2, 100)
    )
    with api_client(api_database_url, response_cache_s=0, pool_max_size=1) as client:
        for key, city, district, service, limit in combinations:
            params = {"start": start.isoformat(), "end": end.isoformat(), "limit": limit}
            params |= {k: v for k, v in (("city", city), ("district", district), ("service", service)) if v}
            sees = {"bandung"} if key == bandung_only else {"jakarta", "bandung"}
            want = [
                (c, d, s, *expected[(c, d, s)])
                for c, d, s in sorted(expected)
                if c in sees and city in (None, c) and district in (None, d) and service in (None, s)
            ]
            for _ in range(8):
                items = walk(client, "/v1/service-levels", params, {"Authorization": f"Bearer {key}"})
                got = [(i["city"], i["district"], i["service"], i["numerator"], i["denominator"]) for i in items]
                assert got == want, params


def test_whole_days() -> None:
    t = DAY0 + timedelta(hours=5)
    assert whole_days(DAY0, DAY0 + timedelta(days=2)) == (DAY0, DAY0 + timedelta(days=2))
    assert whole_days(t, t + timedelta(days=2)) == (DAY0 + timedelta(days=1), DAY0 + timedelta(days=2))
    assert whole_days(t, t + timedelta(hours=20)) == (t + timedelta(hours=20), t + timedelta(hours=20))
