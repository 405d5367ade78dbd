"""US AQI and NowCast worked examples computed by hand from reference/aqi_epa_2024.csv and reference/nowcast.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livinglab.reference import aqi_table
from processing.aqi import aqi_grid, category, index_of, nowcast, sub_index, truncate

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


def test_truncation_adds_a_tolerance_first() -> None:
    # CONTRACT.md section 4: "34.9999999 is 35.0, not 34.9".
    assert truncate([34.9999999, 34.99999999999999, 35.45, 35.499998, 9.05], 1).tolist() == [
        35.0,
        35.0,
        35.4,
        35.4,
        9.0,
    ]
    assert truncate([54.9999999, 54.999998], 0).tolist() == [55.0, 54.0]
    assert index_of("pm25_24h", truncate([35.45], 1)).round().tolist() == [100]
    assert index_of("pm25_24h", [35.5]).tolist() == [101]
    assert index_of("pm25_24h", [400.0]).tolist() == [500]  # above the table: capped


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
