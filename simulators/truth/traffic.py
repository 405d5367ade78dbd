"""Hourly traffic performance of the stored counts (CONTRACT.md section 4), computed plainly.

Per counter and UTC hour: `flow_veh_h` = sm + kr + kb counted in the hour; `flow_pcu_h` with the ekr of the road
type and flow band; `capacity_pcu_h` = C0 x FCLJ x FCPA x FCHS x FCUK (x lanes for per-lane types) unless
overridden; DJ = flow_pcu_h / capacity_pcu_h; LOS from DJ rounded half up to 2 decimals; the target from the road
function; `mean_speed_kmh` the mean of the hour's speed readings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from livinglab.sensors import SensorSpec
from simulators.ledger import Series
from simulators.roads import CLASSES, capacity_pcu_h, ekr_for, los_letter, los_target

HOUR_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class TrafficHour:
    """One counter's hour, labelled by its start."""

    sensor_id: str
    hour_s: int
    flow_veh_h: float
    flow_pcu_h: float
    capacity_pcu_h: float
    degree_of_saturation: float
    los: str
    los_target: str
    mean_speed_kmh: float | None
    #: Vehicles per class counted in the hour.
    counts: dict[str, float]


def _per_hour(s: Series | None) -> dict[int, np.ndarray]:
    if s is None:
        return {}
    hours = s.ts_us // HOUR_US
    return {int(h) * 3600: s.value[hours == h] for h in np.unique(hours)}


def traffic_hours(spec: SensorSpec, series: Mapping[tuple[str, str], Series]) -> list[TrafficHour]:
    """Every hour in which the counter has a stored count."""
    by_class = {cls: _per_hour(series.get((spec.sensor_id, cls))) for cls in CLASSES}
    speeds = _per_hour(series.get((spec.sensor_id, "speed")))
    capacity = capacity_pcu_h(spec)
    target = los_target(spec)
    out: list[TrafficHour] = []
    for hour in sorted(set().union(*(set(h) for h in by_class.values()))):
        counts = {cls: float(by_class[cls][hour].sum()) if hour in by_class[cls] else 0.0 for cls in CLASSES}
        flow = counts["sm"] + counts["kr"] + counts["kb"]
        ekr = ekr_for(spec, flow)
        pcu = counts["sm"] * ekr.sm + counts["kr"] * ekr.kr + counts["kb"] * ekr.kb
        dj = pcu / capacity
        speed = speeds.get(hour)
        out.append(
            TrafficHour(
                sensor_id=spec.sensor_id,
                hour_s=hour,
                flow_veh_h=flow,
                flow_pcu_h=pcu,
                capacity_pcu_h=capacity,
                degree_of_saturation=dj,
                los=los_letter(dj),
                los_target=target,
                mean_speed_kmh=float(speed.mean()) if speed is not None and speed.size else None,
                counts=counts,
            )
        )
    return out
