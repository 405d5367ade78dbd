"""Figures are served at the precision their inputs carry (livinglab.precision, docs/metrics.md): each served value
is the stored, unrounded one rounded by `round_field`, so within half a unit of its last place; readings and the
aggregates' min and max are served as stored."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from livinglab.domain import QUANTITIES, QUANTITIES_BY_CODE
from livinglab.precision import FIELD_DECIMALS, READING_DECIMALS, STATISTICS, decimals_of, round_field
from tests.support.api import Keys, walk
from tests.support.sensors import air, register, traffic

pytestmark = pytest.mark.integration

H0 = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = 24
TRAFFIC_FIELDS = (
    "flow_veh_h",
    "flow_pcu_h",
    "capacity_pcu_h",
    "degree_of_saturation",
    "mean_speed_kmh",
    "completeness",
)
AGGREGATE_FIELDS = ("mean", "min", "max", "p50", "p95", "completeness")


def _awkward(rng: random.Random, scale: float) -> float:
    """A float with binary noise in its last places, as sums and quotients leave them (662.5999999999999)."""
    return rng.randint(0, int(scale * 1000)) / 1000 * 1.1 / 1.1 + rng.random() * 1e-6


@pytest.fixture(scope="module")
def stored(api_database_url: str) -> Iterator[dict[str, Any]]:
    rng = random.Random(18)
    with psycopg.connect(api_database_url) as conn:
        keys = register(conn, [air("aq-prec", "jakarta", "P1"), traffic("tc-prec", "jakarta", "P1")])
        for h in range(HOURS):
            flow_pcu = 662.5999999999999 if h == 0 else _awkward(rng, 3000)
            capacity = _awkward(rng, 3000) + 1
            conn.execute(
                "INSERT INTO traffic_hourly (sensor_key, hour, flow_veh_h, flow_pcu_h, capacity_pcu_h,"
                " degree_of_saturation, los, los_target, los_met, mean_speed_kmh, completeness)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'B', 'C', true, %s, %s)",
                (keys["tc-prec"], H0 + timedelta(hours=h), float(rng.randint(0, 3000)), flow_pcu, capacity,
                 flow_pcu / capacity, _awkward(rng, 80), rng.randint(0, 36) / 36),
            )  # fmt: skip
        for q in QUANTITIES.values():
            for h in range(HOURS):
                values = [_awkward(rng, 500) for _ in range(5)]
                conn.execute(
                    "INSERT INTO agg_1h (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95,"
                    " completeness) VALUES (%s, %s, %s, 5, %s, %s, %s, %s, %s, %s, %s)",
                    (keys["aq-prec"], q.code, H0 + timedelta(hours=h), sum(values), sum(values) / 5, min(values),
                     max(values), sorted(values)[2], _awkward(rng, 500), rng.randint(0, 59) / 59),
                )  # fmt: skip
        conn.execute(
            "INSERT INTO service_hourly (city, district, service, period_start, numerator, denominator)"
            " SELECT 'jakarta', 'P1', s, %s, n, 7 FROM (VALUES ('air', 2), ('traffic', 5), ('data', 7)) v(s, n)",
            (H0,),
        )
        conn.commit()
        yield {"keys": keys}


def _within_half_a_unit(served: float, exact: float, decimals: int) -> bool:
    unit = 10.0**-decimals
    return abs(served - exact) <= unit / 2 + 4 * math.ulp(max(abs(exact), unit))


def test_traffic_figures(client, keys: Keys, stored, api_database_url: str) -> None:
    with psycopg.connect(api_database_url) as conn:
        exact = conn.execute(
            f"SELECT {', '.join(TRAFFIC_FIELDS)} FROM traffic_hourly WHERE sensor_key = %s AND hour = %s",
            (stored["keys"]["tc-prec"], H0),
        ).fetchone()
    assert exact is not None
    items = walk(client, "/v1/traffic/segments", {"district": "P1", "at": H0.isoformat()}, keys.header())
    (item,) = items
    assert item["flow_pcu_h"] == 662.6
    for field, value in zip(TRAFFIC_FIELDS, exact, strict=True):
        decimals = decimals_of(field)
        assert decimals is not None
        assert item[field] == round_field(field, value), field
        assert _within_half_a_unit(item[field], value, decimals), field


def test_traffic_figures_of_every_hour(client, keys: Keys, stored, api_database_url: str) -> None:
    with psycopg.connect(api_database_url) as conn:
        rows = conn.execute(
            f"SELECT hour, {', '.join(TRAFFIC_FIELDS)} FROM traffic_hourly WHERE sensor_key = %s ORDER BY hour",
            (stored["keys"]["tc-prec"],),
        ).fetchall()
    for hour, *exact in rows:
        (item,) = walk(client, "/v1/traffic/segments", {"district": "P1", "at": hour.isoformat()}, keys.header())
        assert [item[f] for f in TRAFFIC_FIELDS] == [
            round_field(f, v) for f, v in zip(TRAFFIC_FIELDS, exact, strict=True)
        ]


def test_aggregates(client, keys: Keys, stored, api_database_url: str) -> None:
    with psycopg.connect(api_database_url) as conn:
        rows = conn.execute(
            f"SELECT quantity, window_start, {', '.join(AGGREGATE_FIELDS)} FROM agg_1h WHERE sensor_key = %s"
            " ORDER BY quantity, window_start",
            (stored["keys"]["aq-prec"],),
        ).fetchall()
    params = {"window": "1h", "start": H0.isoformat(), "end": (H0 + timedelta(hours=HOURS)).isoformat(), "limit": 97}
    items = walk(client, "/v1/sensors/aq-prec/aggregates", params, keys.header())
    assert len(items) == len(rows) == HOURS * len(QUANTITIES)
    for item, (code, _, *exact) in zip(items, rows, strict=True):
        quantity = QUANTITIES_BY_CODE[code].name
        assert item["quantity"] == quantity
        for field, value in zip(AGGREGATE_FIELDS, exact, strict=True):
            assert item[field] == round_field(field, value, quantity=quantity), (quantity, field)
            decimals = decimals_of(field, quantity=quantity) if field != "completeness" else decimals_of(field)
            if decimals is None:  # min and max are readings: as stored
                assert item[field] == value
            else:
                assert _within_half_a_unit(item[field], value, decimals), (quantity, field)


def test_service_levels(client, keys: Keys, stored) -> None:
    params = {"district": "P1", "start": H0.isoformat(), "end": (H0 + timedelta(hours=1)).isoformat()}
    items = walk(client, "/v1/service-levels", params, keys.header())
    served = {i["service"]: i["achieved"] for i in items}
    assert served == {"air": 0.2857, "traffic": 0.7143, "data": 1.0}
    for n, service in ((2, "air"), (5, "traffic"), (7, "data")):
        assert _within_half_a_unit(served[service], n / 7, 4)


def test_the_dashboard_shows_figures_with_the_same_decimals() -> None:
    """api/dashboard/precision.js holds the same tables as livinglab.precision."""
    source = (Path(__file__).parents[2] / "api" / "dashboard" / "precision.js").read_text()

    def table(name: str) -> Any:
        match = re.search(rf"export const {name} = (.+);$", source, re.MULTILINE)
        assert match, name
        return json.loads(match.group(1))

    assert table("FIELD_DECIMALS") == dict(FIELD_DECIMALS)
    assert table("READING_DECIMALS") == dict(READING_DECIMALS)
    assert set(table("STATISTICS")) == STATISTICS
