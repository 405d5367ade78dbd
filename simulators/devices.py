"""Device models: what each sensor reports over one UTC day, deterministic for a seed.

`simulate_day` returns a sensor's natural readings (before any fault) at its aligned timestamps (multiples of its
`interval_s` since the epoch), in the units the device reports. Everything random is drawn from streams keyed by
(seed, sensor, day) or from counter-based knots (see `simulators.randomness`), so a day's readings never depend on
what else was simulated.

Air stations: PM2.5 = seasonal level x diurnal profile x station scale x weather (smooth log-normal, shared by the
city) x station noise, then the sensor's gain drift and white noise; PM10 a station ratio of PM2.5; NO2, CO and HC
follow the traffic profile, O3 the sun; temperature and humidity a daily cycle. Traffic counters: the daily volume
that makes the busiest weekday hour reach `peak_dj`, spread by the weekday or weekend hourly profile, counts per
class drawn as Poisson, mean speed falling as flow nears capacity, and incidents that cut capacity for a while.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livinglab.domain import QUANTITIES
from simulators.models import (
    FREE_FLOW_KMH,
    PM25_DIURNAL,
    WEEKDAY_TRAFFIC,
    WEEKEND_TRAFFIC,
    WEEKEND_VOLUME,
    AirModel,
    TrafficModel,
    hourly_profile,
    seasonal_pm25,
)
from simulators.randomness import Purpose, block_rng, smooth_noise, station_rng
from simulators.roads import capacity_pcu_h, ekr_for, ekr_threshold_veh_h
from simulators.scenario import Scenario, SimSensor

DAY_S = 86_400
#: Decimals a device reports in, by unit.
_DECIMALS = {
    "count": 0,
    "1": 0,
    "km/h": 1,
    "m/s": 2,
    "/": 3,
    "ug/m3": 1,
    "mg/m3": 4,
    "kg/m3": 12,
    "ppb": 1,
    "ppm": 3,
    "Cel": 1,
    "K": 2,
    "%RH": 1,
    "%": 1,
}
#: Effective vehicle length over a loop detector, in metres (motorcycle, light, heavy).
_VEHICLE_LENGTH_M = (2.5, 6.0, 14.0)


@dataclass(frozen=True, slots=True)
class Block:
    """A sensor's readings at timestamps `ts_s` (int seconds), one value array per quantity, in reported units."""

    ts_s: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]

    def __len__(self) -> int:
        return int(self.ts_s.size)


def day_timestamps(interval_s: int, day: int) -> npt.NDArray[np.int64]:
    """The aligned timestamps of one UTC day (day = Unix seconds // 86400)."""
    start = day * DAY_S
    first = -(-start // interval_s) * interval_s
    return np.arange(first, start + DAY_S, interval_s, dtype=np.int64)


def simulate_day(sensor: SimSensor, scenario: Scenario, seed: int, day: int) -> Block:
    """A sensor's natural readings over one UTC day."""
    ts = day_timestamps(sensor.spec.interval_s, day)
    if isinstance(sensor.model, AirModel):
        values = _air(sensor, sensor.model, scenario, seed, day, ts)
    else:
        values = _traffic(sensor, sensor.model, scenario, seed, day, ts)
    return Block(ts, {name: values[name] for name in sensor.model.reported})


def reported_unit(sensor: SimSensor, quantity: str) -> str:
    """The unit a sensor reports a quantity in."""
    return sensor.model.units.get(quantity, QUANTITIES[quantity].unit)


def _local(ts: npt.NDArray[np.int64], scenario: Scenario) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Local hour of day (fractional) and whether it is a weekend day (1970-01-01 was a Thursday)."""
    local_s = ts.astype(np.float64) + scenario.timezone_offset_h * 3600.0
    hours = np.mod(local_s, DAY_S) / 3600.0
    weekday = np.mod(np.floor(local_s / DAY_S).astype(np.int64) + 3, 7)
    return hours, weekday >= 5


def _round(values: npt.NDArray[np.float64], unit: str) -> npt.NDArray[np.float64]:
    return np.round(values, _DECIMALS.get(unit, 3))


def _in_units(sensor: SimSensor, canonical: dict[str, npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[np.float64]]:
    out: dict[str, npt.NDArray[np.float64]] = {}
    for name, values in canonical.items():
        unit = reported_unit(sensor, name)
        converter = QUANTITIES[name].units[unit]
        out[name] = _round((values - converter.offset) / converter.scale, unit)
    return out


def _air(
    sensor: SimSensor, model: AirModel, scenario: Scenario, seed: int, day: int, ts: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.float64]]:
    rng = block_rng(seed, sensor.stream, day, Purpose.VALUES)
    tsf = ts.astype(np.float64)
    hours, weekend = _local(ts, scenario)
    day_of_year = (tsf + scenario.timezone_offset_h * 3600.0) / DAY_S
    # Weather shared by the city: fronts over hours (6 h knots) and gusts (30 min knots).
    city = scenario.city_stream(sensor.spec.city)
    weather = 0.30 * smooth_noise(seed, city, 11, tsf, 6 * 3600.0)
    weather += 0.10 * smooth_noise(seed, city, 12, tsf, 1800.0)
    local = 0.12 * smooth_noise(seed, sensor.stream, 21, tsf, 3600.0)
    diurnal = hourly_profile(PM25_DIURNAL / PM25_DIURNAL.mean(), hours)
    traffic_shape = hourly_profile(WEEKDAY_TRAFFIC / WEEKDAY_TRAFFIC.mean(), hours)
    traffic_shape = np.where(weekend, hourly_profile(WEEKEND_TRAFFIC / WEEKDAY_TRAFFIC.mean(), hours), traffic_shape)
    # exp(x - var/2) keeps the mean of the log-normal factor at 1.
    level = np.exp(weather + local - (0.30**2 + 0.10**2 + 0.12**2) / 2)
    weekend_factor = np.where(weekend, 0.92, 1.0)

    trait = station_rng(seed, sensor.stream)
    offset_ug = float(trait.normal(0.0, 1.0)) if model.profile == "low_cost" else 0.0
    days_deployed = max(0.0, (float(tsf[0]) if tsf.size else 0.0) - scenario.deployed_at_s) / DAY_S
    gain = float(np.clip(1.0 + model.drift_pct_per_30d / 100.0 * days_deployed / 30.0, 0.5, 2.0))

    def noisy(x: npt.NDArray[np.float64], relative: float = model.noise) -> npt.NDArray[np.float64]:
        return x * (1.0 + relative * rng.standard_normal(x.size))

    pm25_true = seasonal_pm25(day_of_year) * diurnal * model.pm25_scale * level * weekend_factor
    pm10_true = pm25_true * model.pm10_ratio * np.exp(0.06 * smooth_noise(seed, sensor.stream, 22, tsf, 3600.0))
    sun = np.clip(np.sin(np.pi * (hours - 6.5) / 12.0), 0.0, None) ** 1.6
    temp = 27.6 + 3.4 * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + 0.8 * smooth_noise(seed, city, 13, tsf, 4 * 3600.0)
    canonical = {
        "pm25": np.maximum(1.0, noisy(pm25_true) * gain + offset_ug),
        "pm10": np.maximum(1.5, noisy(pm10_true) * gain + offset_ug),
        "no2": np.maximum(2.0, noisy((12.0 + 22.0 * traffic_shape) * np.exp(0.5 * weather))),
        "so2": np.maximum(1.0, noisy(18.0 * np.exp(0.25 * smooth_noise(seed, sensor.stream, 23, tsf, 3 * 3600.0)))),
        "o3": np.maximum(2.0, noisy((12.0 + 95.0 * sun) * np.exp(0.2 * smooth_noise(seed, city, 14, tsf, 6 * 3600.0)))),
        "co": np.maximum(100.0, noisy((500.0 + 900.0 * traffic_shape) * np.exp(0.4 * weather))),
        "hc": np.maximum(5.0, noisy((30.0 + 35.0 * traffic_shape) * np.exp(0.3 * weather))),
        "temp": temp + 0.2 * rng.standard_normal(ts.size),
        "rh": np.clip(80.0 - 2.8 * (temp - 28.0) + 4.0 * smooth_noise(seed, city, 15, tsf, 4 * 3600.0), 35, 99),
    }
    return _in_units(sensor, {name: canonical[name] for name in model.reported})


def _incident_capacity(
    model: TrafficModel, seed: int, stream: int, day: int, ts: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The share of capacity left at each timestamp: 1 except during the day's incidents."""
    rng = block_rng(seed, stream, day, Purpose.INCIDENTS)
    factor = np.ones(ts.size)
    for _ in range(int(rng.poisson(model.incidents_per_day))):
        start = day * DAY_S + float(rng.uniform(0, DAY_S))
        duration = float(rng.uniform(15, 120)) * 60
        severity = float(rng.uniform(0.35, 0.7))
        factor = np.where((ts >= start) & (ts < start + duration), np.minimum(factor, severity), factor)
    return factor


def _traffic(
    sensor: SimSensor, model: TrafficModel, scenario: Scenario, seed: int, day: int, ts: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.float64]]:
    spec = sensor.spec
    rng = block_rng(seed, sensor.stream, day, Purpose.VALUES)
    tsf = ts.astype(np.float64)
    hours, weekend = _local(ts, scenario)
    capacity = capacity_pcu_h(spec)
    # Calibrate: the busiest weekday hour runs at `peak_dj` with the high-flow ekr band.
    weekday_share = WEEKDAY_TRAFFIC / WEEKDAY_TRAFFIC.sum()
    pcu_high = ekr_for(spec, 1e9).pcu_per_vehicle(model.mix)
    daily_veh = model.peak_dj * capacity / pcu_high / float(weekday_share.max())
    share = np.where(
        weekend,
        WEEKEND_VOLUME * hourly_profile(WEEKEND_TRAFFIC / WEEKEND_TRAFFIC.sum(), hours),
        hourly_profile(weekday_share, hours),
    )
    variation = np.exp(0.06 * smooth_noise(seed, sensor.stream, 31, tsf, 2 * 3600.0))
    variation *= np.exp(0.04 * smooth_noise(seed, scenario.city_stream(spec.city), 32, tsf, 6 * 3600.0))
    demand_veh_h = daily_veh * share * variation
    # During an incident the counter sees at most what the reduced capacity lets through.
    left = _incident_capacity(model, seed, sensor.stream, day, ts)
    low, high = ekr_for(spec, 0.0).pcu_per_vehicle(model.mix), pcu_high
    pcu = np.where(demand_veh_h < ekr_threshold_veh_h(spec), low, high)
    flow_veh_h = np.minimum(demand_veh_h, left * capacity / pcu * 1.02)
    expected = flow_veh_h * spec.interval_s / 3600.0
    counts = {
        cls: rng.poisson(expected * share_).astype(np.float64)
        for cls, share_ in zip(("sm", "kr", "kb"), model.mix, strict=True)
    }

    assert spec.road_type is not None
    free_flow = model.free_flow_kmh or FREE_FLOW_KMH[spec.road_type]
    dj = demand_veh_h * pcu / (capacity * left)
    speed = np.where(
        dj <= 1.0,
        free_flow * (0.5 + 0.5 * np.sqrt(np.clip(1.0 - dj, 0.0, 1.0))),
        0.5 * free_flow / np.maximum(dj, 1.0) ** 3,
    )
    speed = np.clip(speed * (1.0 + 0.04 * rng.standard_normal(ts.size)), 3.0, free_flow * 1.2)
    lanes = float(spec.lanes or 1)
    mean_length_m = sum(m * length for m, length in zip(model.mix, _VEHICLE_LENGTH_M, strict=True))
    occupancy = np.clip(flow_veh_h / lanes * mean_length_m / (speed * 1000.0) * 100.0, 0.0, 100.0)
    canonical = {**counts, "speed": speed, "occupancy": occupancy}
    return _in_units(sensor, {name: canonical[name] for name in model.reported})
