"""Traffic worked examples computed by hand from reference/traffic_pkji.md (PKJI 2023, PM 96/2015)."""

from __future__ import annotations

import pytest

from livinglab.domain import RoadFunction, RoadType
from processing.traffic import Road, capacity_pcu_h, city_size_factor, level_of_service, traffic_hours

FOUR_LANE = Road(
    RoadType.FOUR_LANE_DIVIDED, lanes=2, road_function=RoadFunction.ARTERI_PRIMER, city_population=10_000_000
)
TWO_WAY = Road(
    RoadType.TWO_LANE_UNDIVIDED, lanes=2, road_function=RoadFunction.KOLEKTOR_SEKUNDER, city_population=2_000_000
)


def test_capacity_4_2_t() -> None:
    # C0 1700 per lane x FCLJ 1.00 (3.5 m) x FCPA 1 x FCHS 1.0 x FCUK 1.04 (> 3 million) x 2 lanes
    assert capacity_pcu_h(FOUR_LANE) == pytest.approx(3536.0)


def test_4_2_t_below_the_flow_threshold() -> None:
    # 1550 veh/h over 2 lanes = 775 per lane < 1050: SM 0.40, KB 1.3 -> 400 + 500 + 65 = 965 PCU/h
    hour = traffic_hours(FOUR_LANE, [1000], [500], [50])
    assert (hour.flow_veh_h[0], hour.flow_pcu_h[0]) == (1550, pytest.approx(965.0))
    assert hour.degree_of_saturation[0] == pytest.approx(965 / 3536)  # 0.273 -> 0.27 -> B
    assert (hour.los[0], hour.los_target, bool(hour.los_met[0])) == ("B", "B", True)


def test_4_2_t_at_and_above_the_flow_threshold() -> None:
    # 4100 veh/h = 2050 per lane >= 1050: SM 0.25, KB 1.2 -> 750 + 1000 + 120 = 1870 -> DJ 0.529 -> C, target B
    hour = traffic_hours(FOUR_LANE, [3000], [1000], [100])
    assert hour.flow_pcu_h[0] == pytest.approx(1870.0)
    assert (hour.los[0], bool(hour.los_met[0])) == ("C", False)
    # exactly 1050 per lane is the high band: 1100 * 0.25 + 900 + 100 * 1.2 = 1295
    assert traffic_hours(FOUR_LANE, [1100], [900], [100]).flow_pcu_h[0] == pytest.approx(1295.0)
    assert traffic_hours(FOUR_LANE, [1099], [900], [100]).flow_pcu_h[0] == pytest.approx(1099 * 0.4 + 900 + 130)


def test_2_2_tt_both_flow_bands() -> None:
    # C0 2800 x FCLJ 1.00 (7 m carriageway) x FCPA 1.00 (50/50) x FCHS 1.0 x FCUK 1.00 (1-3 million)
    assert capacity_pcu_h(TWO_WAY) == pytest.approx(2800.0)
    low = traffic_hours(TWO_WAY, [1000], [600], [100])  # 1700 < 1800 two-way: SM 0.40 (> 6 m), KB 1.3
    assert low.flow_pcu_h[0] == pytest.approx(400 + 600 + 130)
    assert (low.los[0], low.los_target, bool(low.los_met[0])) == ("B", "C", True)  # 1130 / 2800 = 0.404
    high = traffic_hours(TWO_WAY, [2000], [700], [100])  # 2800 >= 1800: SM 0.25, KB 1.2
    assert high.flow_pcu_h[0] == pytest.approx(500 + 700 + 120)
    assert high.los[0] == "C"  # 1320 / 2800 = 0.471


def test_2_2_tt_narrow_carriageway_and_split() -> None:
    narrow = Road(
        RoadType.TWO_LANE_UNDIVIDED,
        lanes=2,
        road_function=RoadFunction.LOKAL_SEKUNDER,
        city_population=2_000_000,
        carriageway_width_m=6.0,
    )
    assert capacity_pcu_h(narrow) == pytest.approx(2800 * 0.87)  # FCLJ 0.87 at 6 m
    assert traffic_hours(narrow, [1000], [600], [100]).flow_pcu_h[0] == pytest.approx(500 + 600 + 130)  # SM 0.50
    assert traffic_hours(narrow, [2000], [700], [100]).flow_pcu_h[0] == pytest.approx(700 + 700 + 120)  # SM 0.35
    split = Road(
        RoadType.TWO_LANE_UNDIVIDED,
        lanes=2,
        road_function=RoadFunction.LOKAL_SEKUNDER,
        city_population=2_000_000,
        carriageway_width_m=7.5,
        direction_split_pct=60.0,
    )
    assert capacity_pcu_h(split) == pytest.approx(2800 * 1.07 * 0.94)  # FCLJ halfway 1.00..1.14, FCPA 0.94


def test_correction_factors_clamp_and_override() -> None:
    wide = Road(
        RoadType.SIX_LANE_DIVIDED, 3, RoadFunction.JALAN_TOL, 50_000, lane_width_m=4.5, side_friction_factor=0.9
    )
    assert capacity_pcu_h(wide) == pytest.approx(1700 * 1.08 * 0.9 * 0.86 * 3)  # FCLJ clamped at 4.0 m
    assert (
        capacity_pcu_h(Road(RoadType.ONE_WAY_TWO_LANE, 2, RoadFunction.JALAN_TOL, 0, capacity_override_pcu_h=1234.0))
        == 1234.0
    )
    assert [city_size_factor(p) for p in (99_999, 100_000, 500_000, 1_000_000, 3_000_000, 3_000_001)] == [
        0.86,
        0.90,
        0.94,
        1.00,
        1.00,
        1.04,
    ]


@pytest.mark.parametrize(
    ("dj", "los"),
    [
        (0.0, "A"),
        (0.20, "A"),
        (0.204, "A"),
        (0.205, "B"),  # rounds half up to 0.21
        (0.44, "B"),
        (0.445, "C"),
        (0.74, "C"),
        (0.745, "D"),
        (0.84, "D"),
        (0.845, "E"),
        (1.00, "E"),
        (1.004, "E"),
        (1.005, "F"),
        (2.5, "F"),
    ],
)
def test_los_band_edges(dj: float, los: str) -> None:
    assert level_of_service([dj])[0] == los


def test_los_target_by_road_function() -> None:
    expected = {
        RoadFunction.ARTERI_PRIMER: "B",
        RoadFunction.KOLEKTOR_PRIMER: "B",
        RoadFunction.LOKAL_PRIMER: "C",
        RoadFunction.JALAN_TOL: "B",
        RoadFunction.ARTERI_SEKUNDER: "C",
        RoadFunction.KOLEKTOR_SEKUNDER: "C",
        RoadFunction.LOKAL_SEKUNDER: "D",
        RoadFunction.LINGKUNGAN: "D",
    }
    for function, target in expected.items():
        road = Road(RoadType.FOUR_LANE_DIVIDED, 2, function, 1_000_000, capacity_override_pcu_h=1000.0)
        hours = traffic_hours(road, [0, 0], [440, 850], [0, 0])  # DJ 0.44 (B) and 0.85 (E)
        assert hours.los_target == target
        assert hours.los.tolist() == ["B", "E"]
        assert hours.los_met.tolist() == [target >= "B", target >= "E"]
