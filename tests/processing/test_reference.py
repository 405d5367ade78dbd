"""The regulation tables load, cover every case the code asks for, and are internally consistent."""

from __future__ import annotations

import itertools
import math

from livinglab.domain import QUANTITIES, RoadFunction, RoadType
from livinglab.reference import aqi_table, index_rules, ispu_table, nowcast_parameters, pkji_tables


def test_ispu_table() -> None:
    table = ispu_table()
    assert [c.top for c in table.categories] == [50, 100, 200, 300, 500]
    assert [c.name for c in table.categories] == ["Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya"]
    assert table.categories[1].colour_hex == "#0000cc"  # Sedang is blue
    assert set(table.parameters) == {"pm10", "pm25", "so2", "co", "o3", "no2", "hc"}
    for parameter in table.parameters:
        tops = table.concentration_tops[parameter]
        assert list(tops) == sorted(tops)
        assert tops[0] > 0
    assert (table.hours, table.min_valid_hours, table.max_index) == (24, 18, 500)


def test_aqi_table() -> None:
    table = aqi_table()
    assert [(c.index_lo, c.index_hi) for c in table.categories] == [
        (0, 50),
        (51, 100),
        (101, 150),
        (151, 200),
        (201, 300),
        (301, 500),
    ]
    assert table.breakpoints["pm25_24h"][0] == (0.0, 9.0)  # the 2024 revision
    assert table.breakpoints["o3_1h_ppm"][:2] == (None, None)
    for column, cells in table.breakpoints.items():
        defined = [c for c in cells if c is not None]
        assert all(lo < hi for lo, hi in defined), column
        assert all(a[1] < b[0] for a, b in itertools.pairwise(defined)), column
    for name, pollutant in table.pollutants.items():
        assert pollutant.column in table.breakpoints
        assert QUANTITIES[name].code > 0
    assert math.isclose(table.pollutants["no2"].ug_m3_per_unit, 46.0055 / 24.45)
    assert math.isclose(table.pollutants["co"].ug_m3_per_unit, 28.0101 / 24.45 * 1000)


def test_rules_and_nowcast() -> None:
    assert index_rules().min_reading_fraction == 0.75
    assert index_rules().rounding_epsilon == 1e-9
    p = nowcast_parameters()
    assert (p.hours, p.recent_hours, p.min_recent_hours, p.min_weight) == (12, 3, 2, 0.5)


def test_pkji_covers_every_road_type_and_function() -> None:
    tables = pkji_tables()
    assert set(tables.base_capacity_pcu_h) == set(RoadType)
    assert set(tables.ekr) == set(RoadType)
    assert set(tables.minimum_los) == set(RoadFunction)
    assert (*tables.los_letters, tables.los_above) == ("A", "B", "C", "D", "E", "F")
    assert list(tables.los_max_dj) == sorted(tables.los_max_dj)
    assert tables.ekr[RoadType.TWO_LANE_UNDIVIDED].flow_basis == "two_way"
    assert tables.ekr[RoadType.SIX_LANE_DIVIDED].threshold_veh_h == 1100
