"""Traffic per sensor and UTC hour (PKJI 2023, PM 96/2015), as CONTRACT.md section 4 reads.

- `flow_veh_h` = sm + kr + kb counted in the hour;
- `flow_pcu_h` = sum of count x ekr, with the ekr of the road type and flow band: for 2/2-TT the band is chosen by
  the two-way flow (the counter measures both directions) and the motorcycle factor by the carriageway width; for
  the other types by the flow per lane of the measured direction (flow_veh_h / lanes);
- `capacity_pcu_h` = C0 x FCLJ x FCPA x FCHS x FCUK, times `lanes` for the per-lane types, unless the sensor has
  `capacity_override_pcu_h`; FCLJ by lane width (by carriageway width for 2/2-TT), FCPA by the directional split
  (2/2-TT only), FCHS = `side_friction_factor`, FCUK by `city_population`; factors between table points are
  interpolated linearly and clamped outside the table;
- `degree_of_saturation` DJ = flow_pcu_h / capacity_pcu_h (unrounded); `los` from DJ rounded half up to 2
  decimals; `los_target` the minimum LOS of the road function; the target is met when `los` is that letter or
  better.
Constants come from `livinglab.reference.pkji_tables()`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livinglab.domain import RoadFunction, RoadType
from livinglab.reference import Curve, EkrFactors, index_rules, pkji_tables
from processing import _index_kernels as _k

FloatArray = npt.NDArray[np.float64]

#: Defaults of the registry (CONTRACT.md section 2), used when a stored sensor lacks the attribute.
DEFAULT_LANE_WIDTH_M = 3.5
DEFAULT_CARRIAGEWAY_WIDTH_M = 7.0
DEFAULT_DIRECTION_SPLIT_PCT = 50.0
DEFAULT_SIDE_FRICTION_FACTOR = 1.0


@dataclass(frozen=True, slots=True)
class Road:
    """The registry attributes of a traffic counter that capacity and ekr depend on."""

    road_type: RoadType
    lanes: int
    road_function: RoadFunction
    city_population: int
    lane_width_m: float = DEFAULT_LANE_WIDTH_M
    carriageway_width_m: float = DEFAULT_CARRIAGEWAY_WIDTH_M
    direction_split_pct: float = DEFAULT_DIRECTION_SPLIT_PCT
    side_friction_factor: float = DEFAULT_SIDE_FRICTION_FACTOR
    capacity_override_pcu_h: float | None = None


def _factor(curve: Curve, x: float) -> float:
    return float(np.interp(x, curve.x, curve.y))


def city_size_factor(population: int) -> float:
    """FCUK: the factor of the band the population falls in (bands start at their minimum, inclusive)."""
    tables = pkji_tables()
    band = bisect.bisect_right(tables.city_size_min_population, population) - 1
    return tables.city_size_factor[max(band, 0)]


def capacity_pcu_h(road: Road) -> float:
    """C = C0 x FCLJ x FCPA x FCHS x FCUK (x lanes for per-lane types), or the sensor's override."""
    if road.capacity_override_pcu_h is not None:
        return float(road.capacity_override_pcu_h)
    tables = pkji_tables()
    two_way = road.road_type is RoadType.TWO_LANE_UNDIVIDED
    if two_way:
        fclj = _factor(tables.carriageway_width_factor, road.carriageway_width_m)
        fcpa = _factor(tables.direction_split_factor, road.direction_split_pct)
    else:
        fclj = _factor(tables.lane_width_factor, road.lane_width_m)
        fcpa = 1.0
    capacity = tables.base_capacity_pcu_h[road.road_type] * fclj * fcpa
    capacity *= road.side_friction_factor * city_size_factor(road.city_population)
    if tables.per_lane[road.road_type]:
        capacity *= road.lanes
    return capacity


def _motorcycle_factor(road: Road, factors: EkrFactors, narrow_max_m: float | None) -> float:
    if factors.sm is not None:
        return factors.sm
    narrow = narrow_max_m is not None and road.carriageway_width_m <= narrow_max_m
    value = factors.sm_narrow if narrow else factors.sm_wide
    if value is None:
        raise ValueError(f"pkji_2023.toml gives no motorcycle ekr for {road.road_type}")
    return value


@dataclass(frozen=True, slots=True)
class TrafficHours:
    """Per hour (row) of one counter."""

    flow_veh_h: FloatArray
    flow_pcu_h: FloatArray
    capacity_pcu_h: float
    degree_of_saturation: FloatArray
    los: npt.NDArray[np.str_]
    #: Position of `los` among the letters, 0 for A (the best).
    los_rank: npt.NDArray[np.intp]
    los_target: str
    los_met: npt.NDArray[np.bool_]


def _los_rank(degree_of_saturation: npt.ArrayLike) -> npt.NDArray[np.intp]:
    tables = pkji_tables()
    dj = np.ascontiguousarray(degree_of_saturation, dtype=np.float64)
    rounded = _k._round_half_up_to(dj.ravel(), tables.dj_decimals, index_rules().rounding_epsilon)
    return np.searchsorted(np.asarray(tables.los_max_dj), rounded, side="left").reshape(dj.shape)


def level_of_service(degree_of_saturation: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """LOS letters from DJ rounded half up to the table's decimals (A <= 0.20 < B <= 0.44 ... E <= 1.00 < F)."""
    tables = pkji_tables()
    return np.array([*tables.los_letters, tables.los_above])[_los_rank(degree_of_saturation)]


def traffic_hours(road: Road, sm: npt.ArrayLike, kr: npt.ArrayLike, kb: npt.ArrayLike) -> TrafficHours:
    """Flow, PCU flow, capacity, DJ and LOS of one counter's hours from the vehicles counted per class."""
    counts = [np.asarray(c, dtype=np.float64) for c in (sm, kr, kb)]
    if any(c.shape != counts[0].shape for c in counts) or counts[0].ndim != 1:
        raise ValueError("sm, kr and kb must be 1-D arrays of the same length")
    if road.lanes < 1:
        raise ValueError("lanes must be at least 1")
    sm_n, kr_n, kb_n = counts
    tables = pkji_tables()
    rule = tables.ekr[road.road_type]
    flow = sm_n + kr_n + kb_n
    basis = flow if rule.flow_basis == "two_way" else flow / road.lanes
    high = basis >= rule.threshold_veh_h
    ekr_sm = np.where(
        high,
        _motorcycle_factor(road, rule.high, rule.narrow_carriageway_max_m),
        _motorcycle_factor(road, rule.low, rule.narrow_carriageway_max_m),
    )
    ekr_kr = np.where(high, rule.high.kr, rule.low.kr)
    ekr_kb = np.where(high, rule.high.kb, rule.low.kb)
    pcu = sm_n * ekr_sm + kr_n * ekr_kr + kb_n * ekr_kb
    capacity = capacity_pcu_h(road)
    dj = pcu / capacity
    rank = _los_rank(dj)
    target = tables.minimum_los[road.road_function]
    return TrafficHours(
        flow_veh_h=flow,
        flow_pcu_h=pcu,
        capacity_pcu_h=capacity,
        degree_of_saturation=dj,
        los=np.array([*tables.los_letters, tables.los_above])[rank],
        los_rank=rank,
        los_target=target,
        los_met=rank <= tables.los_rank(target),
    )


def warm_up() -> None:
    """Compile (or load from the cache) the kernels traffic uses."""
    level_of_service(np.array([0.5]))
