"""US AQI and NowCast worked examples computed by hand from reference/aqi_epa_2024.csv and reference/nowcast.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livinglab.reference import aqi_table
from processing.aqi import aqi_grid, category, index_of, nowcast, sub_index, truncate
from tests.support.epa_aqi import breakpoint_edges, epa_sub_index, epa_truncate

NaN = math.nan


def _hours(*latest_first: float | None, hours: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A one-sensor grid whose last column is c1 (the latest hour), then c2, ... (None: missing hour)."""
    values = [NaN if v is None else v for v in latest_first] + [NaN] * (hours - len(latest_first))
    means = np.array([list(reversed(values))])
    return means, ~np.isnan(means)


def _aqi_of(pollutant: str, *latest_first: float | None, hours: int = 12) -> float:
    means, valid = _hours(*latest_first, hours=hours)
    return float(sub_index(pollutant, means, valid)[0][0, -1])


def test_reference_check_twelve_hours_of_20() -> None:
    means, valid = _hours(*[20.0] * 12)
    assert nowcast(means, valid)[0, -1] == 20.0  # w* = 1
    assert _aqi_of("pm25", *[20.0] * 12) == 71  # 49 / 26.3 * (20.0 - 9.1) + 51 = 71.31


@pytest.mark.parametrize(
    ("latest_first", "expected_nowcast", "expected_aqi"),
    [
        # c2 missing: w* = 10 / 30 -> 0.5; (30 + 0.25 * 10) / (1 + 0.25) = 26.0 -> 49 / 26.3 * 16.9 + 51 = 82.49
        ((30.0, None, 10.0), 26.0, 82),
        # w* = 0.5: (20 + 0.5 * 10) / 1.5 = 16.67 -> 16.6 -> 49 / 26.3 * 7.5 + 51 = 64.97
        ((20.0, 10.0), 50 / 3, 65),
        # w* = 8 / 12: (12 + 10 w + 8 w^2) / (1 + w + w^2) = 10.53 -> 10.5 -> 49 / 26.3 * 1.4 + 51 = 53.61
        ((12.0, 10.0, 8.0), (12 + 10 * (2 / 3) + 8 * (4 / 9)) / (1 + 2 / 3 + 4 / 9), 54),
        # all zero: w = 1, NowCast 0
        ((0.0, 0.0, 0.0), 0.0, 0),
        # 2 of the 3 latest hours present (c1, c2), then a gap, then old hours: all available hours count
        (
            (10.0, 10.0, None, None, None, None, None, None, None, None, None, 40.0),
            (10 + 10 * 0.5 + 40 * 0.5**11) / (1.5 + 0.5**11),
            None,
        ),
    ],
)
def test_nowcast_weights_and_gaps(
    latest_first: tuple[float | None, ...], expected_nowcast: float, expected_aqi: int | None
) -> None:
    means, valid = _hours(*latest_first)
    assert nowcast(means, valid)[0, -1] == pytest.approx(expected_nowcast, rel=1e-12)
    if expected_aqi is not None:
        assert _aqi_of("pm25", *latest_first) == expected_aqi


@pytest.mark.parametrize("latest_first", [(20.0, None, None, 20.0, 20.0), (None, None, 20.0), (None, 20.0, None)])
def test_nowcast_needs_two_of_the_three_latest_hours(latest_first: tuple[float | None, ...]) -> None:
    means, valid = _hours(*latest_first)
    assert math.isnan(nowcast(means, valid)[0, -1])
    assert math.isnan(_aqi_of("pm25", *latest_first))


def test_pm10_nowcast() -> None:
    assert _aqi_of("pm10", *[100.0] * 12) == 73  # 49 / 99 * (100 - 55) + 51 = 73.27


@pytest.mark.parametrize(
    ("pollutant", "ug_m3", "hours", "expected"),
    [
        ("o3", 100.0, 8, 46),  # 100 * 24.45 / 47.9982 = 50.94 ppb -> 0.050 ppm -> 50 / 0.054 * 0.050 = 46.30
        ("co", 5000.0, 8, 49),  # 4.364 ppm -> 4.3 -> 50 / 4.4 * 4.3 = 48.86
        ("no2", 100.0, 1, 50),  # 53.15 ppb -> 53 -> 50
        ("so2", 100.0, 1, 54),  # 38.16 ppb -> 38 -> 49 / 39 * 2 + 51 = 53.51
        ("o3", 500.0, 8, 225),  # 8-h 0.254 ppm is above the 8-h table: 1-h 0.254 -> 99 / 0.199 * 0.049 + 201
        ("so2", 1000.0, 24, 226),  # 1-h 381 ppb > 304: 24-h mean 381 ppb -> 99 / 299 * 76 + 201 = 226.16
        ("so2", 1000.0, 1, 200),  # the same hour without a valid 24-h mean: 200
    ],
)
def test_gases(pollutant: str, ug_m3: float, hours: int, expected: int) -> None:
    assert _aqi_of(pollutant, *[ug_m3] * hours, hours=24) == expected


def test_8_hour_means_need_6_valid_hours() -> None:
    assert _aqi_of("co", *[5000.0] * 6, hours=24) == 49
    assert math.isnan(_aqi_of("co", *[5000.0] * 5, hours=24))


def test_truncation_forgives_only_binary_floating_point_error() -> None:
    # CONTRACT.md section 4: 34.9999999 is 34.9; 35.000000000000004 and 34.99999999999999 are 35.0.
    assert truncate([34.9999999, 34.99999999999999, 35.000000000000004, 35.45, 35.499998, 9.05], 1).tolist() == [
        34.9,
        35.0,
        35.0,
        35.4,
        35.4,
        9.0,
    ]
    assert truncate([54.9999999, 54.999998, 54.99999999999999], 0).tolist() == [54.0, 54.0, 55.0]
    assert truncate([0.0, NaN, math.inf], 1)[[0, 2]].tolist() == [0.0, math.inf]
    assert math.isnan(truncate([NaN], 1)[0])
    assert index_of("pm25_24h", truncate([35.45], 1)).round().tolist() == [100]
    assert index_of("pm25_24h", [35.5]).tolist() == [101]
    assert index_of("pm25_24h", [400.0]).tolist() == [500]  # above the table: capped


# Per pollutant: a value a hair below a breakpoint stays in the band below; one only a rounding error below it
# (as unit conversions and means produce) counts as the breakpoint.
@pytest.mark.parametrize(
    ("column", "decimals", "value", "expected"),
    [
        ("pm25_24h", 1, 35.4999999, 100),  # 35.4 -> top of Moderate
        ("pm25_24h", 1, 35.49999999999999, 101),  # 35.5
        ("pm10_24h", 0, 154.999999, 100),  # 154
        ("pm10_24h", 0, 154.99999999999997, 101),  # 155
        ("o3_8h_ppm", 3, 0.0619999954, 71),  # 0.061 (the 1e-6 tolerance made it 0.062, AQI 74)
        ("o3_8h_ppm", 3, 0.07099999999999999, 101),  # 0.071
        ("o3_1h_ppm", 3, 0.1649999, 150),  # 0.164
        ("o3_1h_ppm", 3, 0.16499999999999998, 151),  # 0.165
        ("co_8h_ppm", 1, 9.4999999, 100),  # 9.4
        ("co_8h_ppm", 1, 9.499999999999998, 101),  # 9.5
        ("so2_1h_ppb", 0, 75.9999999, 100),  # 75
        ("so2_1h_ppb", 0, 75.99999999999999, 101),  # 76
        ("no2_1h_ppb", 0, 100.999999, 100),  # 100
        ("no2_1h_ppb", 0, 100.99999999999999, 101),  # 101
    ],
)
def test_truncation_at_a_breakpoint_per_pollutant(column: str, decimals: int, value: float, expected: int) -> None:
    assert index_of(column, truncate([value], decimals)).round().tolist() == [expected]
    assert epa_sub_index(column, epa_truncate(value, decimals)) == expected


def _columns() -> list[tuple[str, int, float]]:
    """(breakpoint column, decimals, ug/m3 per table unit) of every column the AQI reads."""
    found = {}
    for spec in aqi_table().pollutants.values():
        for column in (spec.column, spec.above_range_column):
            if column is not None:
                found[column] = (column, spec.decimals, spec.ug_m3_per_unit)
    return list(found.values())


@pytest.mark.parametrize(("column", "decimals", "ug_m3_per_unit"), _columns())
def test_truncation_and_index_match_an_independent_exact_version(
    column: str, decimals: int, ug_m3_per_unit: float
) -> None:
    """Random concentrations, values a rounding error off the table's grid, and every breakpoint edge, both in
    the table's unit and as stored (ug/m3, converted on the way in): the processor equals exact decimal EPA
    truncation and a rational index."""
    rng = np.random.default_rng(sum(map(ord, column)))
    top = max(band[1] for band in aqi_table().breakpoints[column] if band is not None)
    step = 10.0**-decimals
    grid = rng.integers(0, round(top * 1.1 / step), 2000) * step
    in_unit = np.concatenate(
        [
            rng.uniform(0, top * 1.1, 3000),
            grid * (1 + rng.choice([-1e-12, -1e-10, -1e-9, -1e-8, 1e-12, 1e-9], grid.size)),
            np.fromiter(breakpoint_edges(column, decimals), dtype=np.float64),
        ]
    )
    as_stored = in_unit * ug_m3_per_unit
    for values in (in_unit, as_stored / ug_m3_per_unit):
        got_conc = truncate(values, decimals)
        got = index_of(column, got_conc)
        for x, conc, index in zip(values.tolist(), got_conc.tolist(), got.tolist(), strict=True):
            want_conc = epa_truncate(x, decimals)
            want = epa_sub_index(column, want_conc)
            assert conc == float(want_conc), (x, conc, want_conc)
            half_up = math.floor(index + 0.5 + 1e-9) if not math.isnan(index) else None
            assert half_up == want, (x, index, want)


def test_aqi_is_the_largest_sub_index_with_its_pollutant() -> None:
    table = aqi_table()
    names = list(table.pollutants)
    means = np.full((len(names), 1, 12), NaN)
    means[names.index("pm25"), 0] = 20.0  # AQI 71
    means[names.index("no2"), 0] = 100.0  # AQI 50
    grid = aqi_grid(means, ~np.isnan(means))
    assert grid.aqi[0, -1] == 71
    assert names[grid.dominant[0, -1]] == "pm25"
    assert grid.sub_indices[names.index("no2"), 0, -1] == 50
    assert grid.concentrations[names.index("pm25"), 0, -1] == 20.0
    assert (category(71).name, category(71).colour_hex) == ("Moderate", "#ffff00")
    assert category(301).name == "Hazardous"


def _naive_nowcast(latest_first: list[float | None]) -> float:
    present = [(i, c) for i, c in enumerate(latest_first[:12]) if c is not None]
    if sum(1 for i, _ in present if i < 3) < 2:
        return NaN
    values = [c for _, c in present]
    w = 1.0 if max(values) == 0 else max(min(values) / max(values), 0.5)
    return sum(w**i * c for i, c in present) / sum(w**i for i, _ in present)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 500)), min_size=12, max_size=12))
def test_nowcast_matches_naive(latest_first: list[float | None]) -> None:
    means, valid = _hours(*latest_first)
    got = nowcast(means, valid)[0, -1]
    want = _naive_nowcast(latest_first)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)
