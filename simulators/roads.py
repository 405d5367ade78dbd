"""Road capacity and level of service (PKJI 2023, PM 96/2015), written plainly for the simulator.

The traffic model uses these to calibrate volumes (a counter's busiest hour reaches its `peak_dj`) and the ground
truth uses them to state what the platform should compute (CONTRACT.md section 4). Only the constants come from
`livinglab.reference`; the arithmetic is this module's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from livinglab.domain import RoadType
from livinglab.reference import Curve, PkjiTables, pkji_tables
from livinglab.sensors import SensorSpec

CLASSES = ("sm", "kr", "kb")


def _curve(curve: Curve, x: float) -> float:
    return float(np.interp(x, curve.x, curve.y))


def capacity_pcu_h(spec: SensorSpec, tables: PkjiTables | None = None) -> float:
    """C = C0 x FCLJ x FCPA x FCHS x FCUK (per-lane types: x lanes), unless the sensor overrides it."""
    if spec.capacity_override_pcu_h is not None:
        return float(spec.capacity_override_pcu_h)
    t = tables or pkji_tables()
    road = _road_type(spec)
    base = t.base_capacity_pcu_h[road] * (float(_lanes(spec)) if t.per_lane[road] else 1.0)
    if road is RoadType.TWO_LANE_UNDIVIDED:
        fclj = _curve(t.carriageway_width_factor, float(spec.carriageway_width_m or 7.0))
        fcpa = _curve(t.direction_split_factor, float(spec.direction_split_pct or 50.0))
    else:
        fclj = _curve(t.lane_width_factor, float(spec.lane_width_m or 3.5))
        fcpa = 1.0
    fchs = float(spec.side_friction_factor or 1.0)
    population = int(spec.city_population or 0)
    fcuk = t.city_size_factor[0]
    for minimum, factor in zip(t.city_size_min_population, t.city_size_factor, strict=True):
        if population >= minimum:
            fcuk = factor
    return base * fclj * fcpa * fchs * fcuk


@dataclass(frozen=True, slots=True)
class Ekr:
    """PCU factors of the three vehicle classes."""

    sm: float
    kr: float
    kb: float

    def pcu_per_vehicle(self, mix: tuple[float, float, float]) -> float:
        return mix[0] * self.sm + mix[1] * self.kr + mix[2] * self.kb


def ekr_for(spec: SensorSpec, flow_veh_h: float, tables: PkjiTables | None = None) -> Ekr:
    """The ekr factors for a counter's road type at an hourly flow (the flow band decides low or high factors)."""
    t = tables or pkji_tables()
    road = _road_type(spec)
    rule = t.ekr[road]
    basis = flow_veh_h if rule.flow_basis == "two_way" else flow_veh_h / _lanes(spec)
    band = rule.low if basis < rule.threshold_veh_h else rule.high
    sm: float | None = band.sm
    if sm is None:
        narrow = float(spec.carriageway_width_m or 7.0) <= float(rule.narrow_carriageway_max_m or 0.0)
        sm = band.sm_narrow if narrow else band.sm_wide
    assert sm is not None
    return Ekr(sm=float(sm), kr=float(band.kr), kb=float(band.kb))


def ekr_threshold_veh_h(spec: SensorSpec, tables: PkjiTables | None = None) -> float:
    """The hourly flow of the counter (as counted: two-way or the measured direction) where ekr turns high."""
    t = tables or pkji_tables()
    rule = t.ekr[_road_type(spec)]
    return rule.threshold_veh_h * (1.0 if rule.flow_basis == "two_way" else float(_lanes(spec)))


def round_half_up(value: float, decimals: int, epsilon: float = 1e-9) -> float:
    """Half-up rounding that survives representation error (0.845 stored as 0.84499999... still rounds up)."""
    scale = 10.0**decimals
    return math.floor(value * scale + 0.5 + epsilon) / scale


def los_letter(degree_of_saturation: float, tables: PkjiTables | None = None) -> str:
    """The LOS letter of a degree of saturation, after rounding DJ half up (CONTRACT.md section 4)."""
    t = tables or pkji_tables()
    dj = round_half_up(degree_of_saturation, t.dj_decimals)
    for letter, top in zip(t.los_letters, t.los_max_dj, strict=True):
        if dj <= top + 1e-12:
            return letter
    return t.los_above


def los_target(spec: SensorSpec, tables: PkjiTables | None = None) -> str:
    """The minimum LOS of the counter's road function."""
    t = tables or pkji_tables()
    assert spec.road_function is not None
    return t.minimum_los[spec.road_function]


def _road_type(spec: SensorSpec) -> RoadType:
    if spec.road_type is None:
        raise ValueError(f"{spec.sensor_id} has no road type")
    return spec.road_type


def _lanes(spec: SensorSpec) -> int:
    return int(spec.lanes or 1)
