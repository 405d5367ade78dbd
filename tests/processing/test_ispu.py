"""ISPU worked examples computed by hand from reference/ispu_2020.csv, and the grid against a naive version."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livinglab.reference import ispu_table
from processing.ispu import category, ispu_grid, sub_index, valid_hours

# Per parameter: the band tops of the table (ISPU 50, 100, 200, 300, 500) and the band midpoints, where the formula
# gives the middle of each index band (25, 75, 150, 250, 400) exactly.
EDGES = {
    "pm10": [50, 150, 350, 420, 500],
    "pm25": [15.5, 55.4, 150.4, 250.4, 500],
    "so2": [52, 180, 400, 800, 1200],
    "co": [4000, 8000, 15000, 30000, 45000],
    "o3": [120, 235, 400, 800, 1000],
    "no2": [80, 200, 1130, 2260, 3000],
    "hc": [45, 100, 215, 432, 648],
}
MIDPOINTS = {
    "pm10": [25, 100, 250, 385, 460],
    "pm25": [7.75, 35.45, 102.9, 200.4, 375.2],
    "so2": [26, 116, 290, 600, 1000],
    "co": [2000, 6000, 11500, 22500, 37500],
    "o3": [60, 177.5, 317.5, 600, 900],
    "no2": [40, 140, 665, 1695, 2630],
    "hc": [22.5, 72.5, 157.5, 323.5, 540],
}


@pytest.mark.parametrize("parameter", sorted(EDGES))
def test_band_edges_and_midpoints(parameter: str) -> None:
    assert sub_index(parameter, EDGES[parameter]).tolist() == [50, 100, 200, 300, 500]
    assert sub_index(parameter, MIDPOINTS[parameter]).tolist() == [25, 75, 150, 250, 400]
    assert sub_index(parameter, [0.0, 600_000.0]).tolist() == [0, 500]  # from 0/0; capped at 500


@pytest.mark.parametrize(
    ("parameter", "concentration", "expected"),
    [
        ("pm10", 25.5, 26),  # slope 1: 25.5 exactly, half up
        ("pm10", 25.4, 25),
        ("so2", 53, 50),  # 50 + 50 / 128 * 1 = 50.39
        ("co", 4100, 51),  # 50 + 50 / 4000 * 100 = 51.25
        ("pm25", 15.6, 50),  # 50 + 50 / 39.9 * 0.1 = 50.13
        ("pm25", 20.0, 56),  # 50 + 50 / 39.9 * 4.5 = 55.64
        ("no2", 201, 100),  # 100 + 100 / 930 * 1 = 100.11
        ("no2", 1131, 200),  # 200 + 100 / 1130 * 1 = 200.09
        ("o3", 236, 101),  # 100 + 100 / 165 * 1 = 100.61
        ("hc", 648.1, 500),  # above the table: capped
    ],
)
def test_inside_bands(parameter: str, concentration: float, expected: int) -> None:
    assert sub_index(parameter, [concentration])[0] == expected


def test_categories_and_colours() -> None:
    assert [(category(v).name, category(v).colour_hex) for v in (0, 50, 51, 100, 101, 200, 201, 300, 301, 500)] == [
        ("Baik", "#00cc00"),
        ("Baik", "#00cc00"),
        ("Sedang", "#0000cc"),
        ("Sedang", "#0000cc"),
        ("Tidak Sehat", "#cccc00"),
        ("Tidak Sehat", "#cccc00"),
        ("Sangat Tidak Sehat", "#cc0000"),
        ("Sangat Tidak Sehat", "#cc0000"),
        ("Berbahaya", "#000000"),
        ("Berbahaya", "#000000"),
    ]


def test_hour_validity_is_75_percent_of_the_interval() -> None:
    # interval 60 s: 60 readings per hour, 45 needed; interval 1 s: 2700; interval 7 s: 514.3 -> 386.
    assert valid_hours([45, 44, 2700, 2699, 386, 385], [60, 60, 1, 1, 7, 7]).tolist() == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]


def _grid(hours: int, **series: list[float]) -> tuple[np.ndarray, np.ndarray]:
    parameters = ispu_table().parameters
    means = np.full((len(parameters), 1, hours), np.nan)
    for name, values in series.items():
        means[parameters.index(name), 0, : len(values)] = values
    return means, ~np.isnan(means)


def test_18_of_24_hours_rule() -> None:
    # 24 hours of PM2.5: 18 valid at 20.0, 6 invalid at 100.0 (too few readings): the mean ignores them.
    means, valid = _grid(24, pm25=[20.0] * 18 + [100.0] * 6)
    valid[:, 0, 18:] = False
    grid = ispu_grid(means, valid)
    label = 23  # labelled by the end of hour 23, covering hours 0..23
    assert grid.ispu[0, label] == 56  # 50 + 50 / 39.9 * 4.5 = 55.64
    assert ispu_table().parameters[grid.critical[0, label]] == "pm25"
    assert grid.reported_hours_valid[0, label] == 18
    assert grid.mean_24h[0, 0, label] == 20.0
    valid[:, 0, 17] = False  # 17 valid hours: no 24-hour mean, no ISPU
    grid = ispu_grid(means, valid)
    assert math.isnan(grid.ispu[0, label])
    assert grid.critical[0, label] == -1
    assert grid.reported_hours_valid[0, label] == 17


def test_critical_parameter_is_the_largest_sub_index_ties_by_table_order() -> None:
    means, valid = _grid(24, pm25=[55.4] * 24, pm10=[150.0] * 24, co=[4000.0] * 24)
    grid = ispu_grid(means, valid)
    assert grid.ispu[0, 23] == 100
    assert ispu_table().parameters[grid.critical[0, 23]] == "pm25"  # pm25 and pm10 both give 100
    assert grid.sub_indices[ispu_table().parameters.index("co"), 0, 23] == 50


def _naive_sub_index(parameter: str, x: float) -> float:
    tops = EDGES[parameter]
    indices = [50, 100, 200, 300, 500]
    lo_x, lo_i = 0.0, 0.0
    for top, index in zip(tops, indices, strict=True):
        if x <= top:
            value = (index - lo_i) / (top - lo_x) * (x - lo_x) + lo_i
            return min(math.floor(value + 0.5 + 1e-9), 500)
        lo_x, lo_i = top, index
    return 500


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(EDGES)), st.floats(0, 60000, allow_nan=False))
def test_sub_index_matches_naive(parameter: str, concentration: float) -> None:
    assert sub_index(parameter, [concentration])[0] == _naive_sub_index(parameter, concentration)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 400)), min_size=30, max_size=30))
def test_grid_matches_naive(hourly: list[float | None]) -> None:
    means, valid = _grid(30, pm25=[math.nan if v is None else v for v in hourly])
    grid = ispu_grid(means, valid)
    for label in range(30):
        window = [v for v in hourly[max(0, label - 23) : label + 1] if v is not None]
        if len(window) >= 18:
            total = 0.0
            for v in window:
                total += v
            assert grid.ispu[0, label] == _naive_sub_index("pm25", total / len(window))
        else:
            assert math.isnan(grid.ispu[0, label])
        assert grid.reported_hours_valid[0, label] == len(window)
