"""Device models: what a sensor would report at a given time (deterministic for a seed)."""

from __future__ import annotations

import math

import numpy as np

from livinglab.sensors import SensorSpec

# Weekday hourly weights of daily two-way volume, local hours 0..23 (reference/simulation.md), normalised.
_HOURLY_WEIGHTS = np.array(
    [1.0, 0.7, 0.5, 0.5, 0.9, 2.6, 5.6, 7.4, 7.2, 6.0, 5.2, 5.1, 5.0, 5.0, 5.2, 5.6, 6.6, 7.6, 7.3, 5.6, 4.2, 3.1,
     2.2, 1.4]
)  # fmt: skip
_HOURLY_SHARE = _HOURLY_WEIGHTS / _HOURLY_WEIGHTS.sum()
_MIX = {"sm": 0.78, "kr": 0.20, "kb": 0.02}  # Dishub DKI camera counts, Sep 2023


def _local_hour(ts_s: float, tz_offset_h: float) -> float:
    return ((ts_s / 3600.0) + tz_offset_h) % 24.0


def air_reading(spec: SensorSpec, ts_s: float, rng: np.random.Generator, tz_offset_h: float) -> dict[str, float]:
    """PM2.5 highest from night to morning, lowest in the afternoon; PM10 about 1.6 x PM2.5."""
    hour = _local_hour(ts_s, tz_offset_h)
    diurnal = 1.0 + 0.45 * math.cos(2 * math.pi * (hour - 6.0) / 24.0)
    pm25 = max(1.0, 40.0 * diurnal * float(rng.lognormal(0.0, 0.12)))
    pm10 = pm25 * float(rng.uniform(1.4, 1.8))
    return {
        "pm25": round(pm25, 1),
        "pm10": round(pm10, 1),
        "temp": round(27 + 4 * math.sin(2 * math.pi * (hour - 9) / 24) + float(rng.normal(0, 0.3)), 1),
        "rh": round(75 + float(rng.normal(0, 3)), 1),
    }


def traffic_reading(spec: SensorSpec, ts_s: float, rng: np.random.Generator, tz_offset_h: float) -> dict[str, float]:
    """Vehicle counts per class for one counting interval, and mean speed that falls as flow nears capacity."""
    hour = int(_local_hour(ts_s, tz_offset_h))
    lanes = spec.lanes or 2
    daily_per_lane = 14000.0
    hourly = daily_per_lane * lanes * _HOURLY_SHARE[hour] * 24 / 24
    expected = hourly * spec.interval_s / 3600.0
    counts = {cls: int(rng.poisson(expected * share)) for cls, share in _MIX.items()}
    load = min(1.2, hourly * 0.45 / (1700.0 * lanes))
    speed = max(5.0, 60.0 * (1.0 - 0.7 * load) + float(rng.normal(0, 2)))
    return {**counts, "speed": round(speed, 1)}
