"""Ground truth on hand-computed cases: windows, hourly validity, ISPU, NowCast/AQI, PKJI flow and LOS."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from livinglab.domain import Window
from livinglab.reference import aqi_table
from simulators.ledger import Ledger
from simulators.messages import Message, Reading
from simulators.scenario import Scenario, parse_scenario
from simulators.truth import GroundTruth, compute_ground_truth
from simulators.truth.air import aqi_at, aqi_index, ispu_sub_index, nowcast, truncate
from tests.support.epa_aqi import breakpoint_edges, epa_sub_index, epa_truncate

H0 = 1_795_000_000 // 86400 * 86400  # a UTC midnight
SCENARIO = """
city: testcity
sensors:
  - {sensor_id: aq-1, kind: air, district: A, lat: 0, lon: 0, interval_s: 60}
  - {sensor_id: tc-1, kind: traffic, district: A, lat: 0, lon: 0, interval_s: 300, road_type: 4/2-T, lanes: 2,
     road_function: arteri_primer, city_population: 10600000}
  - {sensor_id: tc-2, kind: traffic, district: A, lat: 0, lon: 0, interval_s: 300, road_type: 4/2-T, lanes: 2,
     road_function: lokal_sekunder, city_population: 10600000, capacity_override_pcu_h: 1000}
"""


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(SCENARIO, "test")


def _truth(scenario: Scenario, sensor_id: str, rows: list[tuple[str, int, float]]) -> GroundTruth:
    ledger = Ledger()
    kind = scenario.sensor(sensor_id).kind.value
    for quantity, ts, value in rows:
        reading = Reading(quantity, ts * 1_000_000, value)
        ledger.record(Message(0.0, (0,), f"p/testcity/{kind}/{sensor_id}", b"", kind, sensor_id, (reading,)))
    return compute_ground_truth(scenario, ledger)


def test_windows_and_exact_percentiles(scenario: Scenario) -> None:
    truth = _truth(scenario, "aq-1", [("pm25", H0, 40.0), ("pm25", H0 + 20, 42.0), ("pm25", H0 + 40, 47.0),
                                      ("pm25", H0 + 60, 30.0)])  # fmt: skip
    minute = truth.aggregates[Window.MINUTE]
    assert [(a.window_start_s - H0, a.count, a.mean, a.min, a.max, a.p50) for a in minute] == [
        (0, 3, 43.0, 40.0, 47.0, 42.0),
        (60, 1, 30.0, 30.0, 30.0, 30.0),
    ]
    assert minute[0].p95 == pytest.approx(46.5)  # h = 2 x 0.95 = 1.9: 42 + 0.9 x (47 - 42)
    assert minute[0].completeness == 1.0  # three readings where one is expected: capped at 1
    (hour,) = truth.aggregates[Window.HOUR]
    assert hour.count == 4
    assert hour.completeness == pytest.approx(4 / 60)
    (day,) = truth.aggregates[Window.DAY]
    assert day.completeness == pytest.approx(4 / 1440)


def _hours(values_by_hour: dict[int, float], per_hour: int = 60) -> list[tuple[str, int, float]]:
    return [("pm25", H0 + h * 3600 + i * 60, v) for h, v in values_by_hour.items() for i in range(per_hour)]


def test_ispu_needs_18_valid_hours_of_45_readings(scenario: Scenario) -> None:
    rows = _hours(dict.fromkeys(range(17), 55.4)) + _hours({17: 10.0}, per_hour=44)
    truth = _truth(scenario, "aq-1", rows)
    label = {v.window_end_s: v for v in truth.ispu}[H0 + 24 * 3600]
    assert label.ispu is None
    assert label.hours_valid == {"pm25": 17}
    rows = _hours(dict.fromkeys(range(17), 55.4)) + _hours({17: 55.4}, per_hour=45)
    label = {v.window_end_s: v for v in _truth(scenario, "aq-1", rows).ispu}[H0 + 24 * 3600]
    assert (label.ispu, label.category, label.critical_parameter) == (100, "Sedang", "pm25")
    assert label.sub_indices == {"pm25": 100}
    assert label.hours_valid == {"pm25": 18}


def test_ispu_sub_index_bands_rounding_and_cap() -> None:
    assert ispu_sub_index("pm25", 0.0) == 0
    assert ispu_sub_index("pm25", 15.5) == 50
    assert ispu_sub_index("pm25", 35.45) == 75  # (100 - 50) / (55.4 - 15.5) x 19.95 + 50 = 75.0
    x = 15.5 + 24.5 * 39.9 / 50  # exactly 74.5 on paper, a hair below in floating point
    assert ispu_sub_index("pm25", x) == 75  # half up
    assert ispu_sub_index("pm10", 500.0) == 500
    assert ispu_sub_index("pm10", 9999.0) == 500
    assert ispu_sub_index("co", 4000.0) == 50


def test_nowcast_worked_check_and_truncation() -> None:
    hours = {H0 - i * 3600: 20.0 for i in range(1, 13)}
    assert nowcast(hours, H0) == pytest.approx(20.0)
    assert aqi_index("pm25_24h", truncate(20.0, 1)) == 71
    # CONTRACT.md section 4: only binary floating-point error is forgiven.
    assert truncate(34.9999999, 1) == 34.9
    assert truncate(34.99999999999999, 1) == truncate(35.000000000000004, 1) == 35.0
    assert truncate(34.99, 1) == 34.9
    assert aqi_index("o3_8h_ppm", truncate(0.0619999954, 3)) == 71
    assert nowcast({H0 - 3 * 3600: 20.0, H0 - 4 * 3600: 20.0}, H0) is None  # needs 2 of the latest 3 hours
    rising = {H0 - 3600: 40.0, H0 - 7200: 10.0}
    # w* = 10 / 40 < 0.5 -> w = 0.5: (40 + 0.5 x 10) / 1.5 = 30
    assert nowcast(rising, H0) == pytest.approx(30.0)


def test_aqi_of_a_station(scenario: Scenario) -> None:
    rows = _hours(dict.fromkeys(range(12), 20.0))
    by_hour = {v.hour_s: v for v in _truth(scenario, "aq-1", rows).aqi}
    value = by_hour[H0 + 12 * 3600]
    assert (value.aqi, value.category, value.dominant_pollutant) == (71, "Moderate", "pm25")
    assert value.nowcast["pm25"] == 20.0


def test_traffic_flow_pcu_dj_and_los(scenario: Scenario) -> None:
    rows = [("sm", H0, 1500.0), ("kr", H0, 500.0), ("kb", H0, 50.0), ("speed", H0, 40.0), ("speed", H0 + 300, 50.0)]
    (hour,) = _truth(scenario, "tc-1", rows).traffic
    assert hour.capacity_pcu_h == pytest.approx(1700 * 2 * 1.04)  # C0 per lane x lanes x FCUK (> 3 million)
    assert hour.flow_veh_h == 2050.0
    assert hour.flow_pcu_h == pytest.approx(1500 * 0.40 + 500 + 50 * 1.3)  # 1025 veh/h per lane: low band
    assert hour.degree_of_saturation == pytest.approx(1165 / 3536)
    assert (hour.los, hour.los_target) == ("B", "B")
    assert hour.mean_speed_kmh == 45.0
    heavy = [("sm", H0, 3000.0), ("kr", H0, 500.0), ("kb", H0, 50.0)]  # 1775 veh/h per lane: high band
    (hour,) = _truth(scenario, "tc-1", heavy).traffic
    assert hour.flow_pcu_h == pytest.approx(3000 * 0.25 + 500 + 50 * 1.2)
    assert hour.mean_speed_kmh is None


def test_los_rounds_dj_half_up_before_the_bands(scenario: Scenario) -> None:
    (hour,) = _truth(scenario, "tc-2", [("kr", H0, 445.0)]).traffic
    assert hour.degree_of_saturation == pytest.approx(0.445)
    assert (hour.los, hour.los_target) == ("C", "D")  # 0.445 -> 0.45: C, not B


def test_ground_truth_files(scenario: Scenario, tmp_path: Path) -> None:
    truth = _truth(scenario, "aq-1", _hours({0: 12.5}))
    truth.write(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["readings_stored"] == 60
    lines = (tmp_path / "agg_1h.csv").read_text().splitlines()
    assert lines[0].startswith("sensor_id,quantity,window_start,count,mean")
    assert lines[1].startswith("aq-1,pm25,")
    assert ",60,12.5," in lines[1]
    assert {p.name for p in tmp_path.iterdir()} == {
        "summary.json", "faults.csv", "agg_1m.csv", "agg_1h.csv", "agg_1d.csv", "ispu.csv", "aqi.csv", "traffic.csv",
        "lorawan.csv",
    }  # fmt: skip


def _station(quantity: str, values_ug: dict[int, float]) -> dict[str, dict[int, tuple[float, int]]]:
    return {quantity: {H0 - h * 3600: (v, 60) for h, v in values_ug.items()}}


def test_aqi_o3_above_the_8_hour_table_and_so2_above_200() -> None:
    o3_ug_per_ppm = 47.9982 / 24.45 * 1000
    high_o3 = _station("o3", dict.fromkeys(range(1, 9), 0.210 * o3_ug_per_ppm))
    # 0.210 ppm is above the 8-hour table (0.200): the latest hour on the 1-hour table, 0.205-0.404 -> 201-300
    assert aqi_at("aq-1", high_o3, 60, H0).sub_indices["o3"] == round(99 / 0.199 * 0.005 + 201)
    mid_o3 = _station("o3", dict.fromkeys(range(1, 9), 0.100 * o3_ug_per_ppm))
    assert aqi_at("aq-1", mid_o3, 60, H0).sub_indices["o3"] == round(49 / 0.019 * 0.014 + 151)
    so2_ug_per_ppb = 64.066 / 24.45
    one_hour = _station("so2", {1: 400 * so2_ug_per_ppb})
    assert aqi_at("aq-1", one_hour, 60, H0).sub_indices["so2"] == 200  # above 200 without a valid 24-hour mean
    day = _station("so2", dict.fromkeys(range(1, 25), 400 * so2_ug_per_ppb))
    assert aqi_at("aq-1", day, 60, H0).sub_indices["so2"] == round(99 / 299 * 95 + 201)


@pytest.mark.parametrize(
    ("column", "decimals"),
    [("pm25_24h", 1), ("pm10_24h", 0), ("o3_8h_ppm", 3), ("o3_1h_ppm", 3), ("co_8h_ppm", 1), ("so2_1h_ppb", 0),
     ("no2_1h_ppb", 0)],
)  # fmt: skip
def test_aqi_truncation_matches_an_independent_exact_version(column: str, decimals: int) -> None:
    """Random concentrations, values a rounding error off the table's grid, and every breakpoint edge."""
    rng = random.Random(column)
    top = max(band[1] for band in aqi_table().breakpoints[column] if band is not None)
    step = 10.0**-decimals
    values = [rng.uniform(0, top * 1.1) for _ in range(1500)]
    grid = [rng.randrange(round(top * 1.1 / step)) * step for _ in range(1000)]
    values += [x * (1 + rng.choice([-1e-9, -1e-12, 1e-12])) for x in grid]
    values += list(breakpoint_edges(column, decimals))
    for x in values:
        want = epa_truncate(x, decimals)
        assert truncate(x, decimals) == float(want), x
        assert aqi_index(column, truncate(x, decimals)) == epa_sub_index(column, want), x
