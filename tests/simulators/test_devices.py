"""Device models: realistic Jakarta-like ranges and shapes (reference/simulation.md), deterministic for a seed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from livinglab.domain import QUANTITIES
from simulators.devices import DAY_S, Block, simulate_day
from simulators.roads import capacity_pcu_h, ekr_for
from simulators.scenario import Scenario, load_scenario


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario("demo")


def _day(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) // DAY_S


def _local_hour(block: Block, offset_h: float = 7) -> np.ndarray:
    return ((block.ts_s + offset_h * 3600) % DAY_S) // 3600


def _hourly_dj(scenario: Scenario, sensor_id: str, day: int) -> dict[int, float]:
    sensor = scenario.sensor(sensor_id)
    block = simulate_day(sensor, scenario, 1, day)
    hours = _local_hour(block)
    capacity = capacity_pcu_h(sensor.spec)
    out = {}
    for hour in range(24):
        sm, kr, kb = (float(block.values[c][hours == hour].sum()) for c in ("sm", "kr", "kb"))
        ekr = ekr_for(sensor.spec, sm + kr + kb)
        out[hour] = (sm * ekr.sm + kr * ekr.kr + kb * ekr.kb) / capacity
    return out


def test_same_seed_same_readings_and_different_seed_different(demo: Scenario) -> None:
    sensor = demo.sensor("aq-menteng-01")
    day = _day(2026, 8, 3)
    first, again, other = (simulate_day(sensor, demo, seed, day) for seed in (7, 7, 8))
    for name in sensor.model.reported:
        assert np.array_equal(first.values[name], again.values[name])
    assert not np.array_equal(first.values["pm25"], other.values["pm25"])


def test_readings_are_aligned_and_within_the_physical_ranges(demo: Scenario) -> None:
    day = _day(2026, 7, 15)
    for sensor in demo.sensors:
        block = simulate_day(sensor, demo, 1, day)
        assert len(block) == DAY_S // sensor.spec.interval_s
        assert np.all(block.ts_s % sensor.spec.interval_s == 0)
        for name, values in block.values.items():
            unit = QUANTITIES[name].units[sensor.model.units.get(name, QUANTITIES[name].unit)]
            canonical = values * unit.scale + unit.offset
            assert np.all((canonical >= QUANTITIES[name].min_value) & (canonical <= QUANTITIES[name].max_value))


def test_pm25_follows_the_seasons_and_the_daily_cycle(demo: Scenario) -> None:
    station = demo.sensor("aq-kebayoran-01")  # pm25_scale 0.95, no drift
    dry = [simulate_day(station, demo, 1, _day(2026, 8, d)) for d in range(1, 29)]
    wet = [simulate_day(station, demo, 1, _day(2026, 1, d)) for d in range(1, 29)]
    dry_mean = float(np.mean([b.values["pm25"].mean() for b in dry]))
    wet_mean = float(np.mean([b.values["pm25"].mean() for b in wet]))
    assert 45 <= dry_mean <= 65  # dry season monthly means ~50-57 (x 0.95)
    assert 12 <= wet_mean <= 25  # rainy season ~15-20
    hours = np.concatenate([_local_hour(b) for b in dry])
    pm25 = np.concatenate([b.values["pm25"] for b in dry])
    morning = pm25[(hours >= 7) & (hours < 9)].mean()
    afternoon = pm25[(hours >= 13) & (hours < 16)].mean()
    assert morning > 1.8 * afternoon
    pm10 = np.concatenate([b.values["pm10"] for b in dry])
    assert 1.4 <= float(np.median(pm10 / pm25)) <= 1.8


def test_reference_station_reports_gases_in_its_configured_units(demo: Scenario) -> None:
    menteng = simulate_day(demo.sensor("aq-menteng-01"), demo, 1, _day(2026, 8, 3))
    co_ppm, no2_ppb = menteng.values["co"], menteng.values["no2"]
    assert 0.2 < float(co_ppm.mean()) < 3.0  # ~0.5-2.5 mg/m3 of CO, as ppm
    assert 3 < float(no2_ppb.mean()) < 40
    hours = _local_hour(menteng)
    o3 = menteng.values["o3"]
    assert o3[(hours >= 11) & (hours < 14)].mean() > 2 * o3[(hours >= 0) & (hours < 5)].mean()


def test_busy_arterial_peaks_near_capacity_on_weekdays(demo: Scenario) -> None:
    weekdays = [_day(2026, 9, d) for d in (1, 2, 3, 8, 9, 10)]  # Tue-Thu
    peak, midday, night = [], [], []
    for day in weekdays:
        dj = _hourly_dj(demo, "tc-thamrin-01", day)
        peak.append(max(dj[h] for h in (7, 8, 17, 18)))
        midday.append(np.mean([dj[h] for h in (11, 12, 13)]))
        night.append(max(dj[h] for h in (1, 2, 3)))
    assert 0.85 <= np.mean(peak) <= 1.1
    assert 0.5 <= np.mean(midday) <= 0.75
    assert max(night) < 0.15


def test_weekend_mornings_are_flatter(demo: Scenario) -> None:
    saturday, tuesday = _day(2026, 9, 5), _day(2026, 9, 1)
    weekend, weekday = _hourly_dj(demo, "tc-senopati-01", saturday), _hourly_dj(demo, "tc-senopati-01", tuesday)
    assert weekend[7] < 0.7 * weekday[7]
    assert sum(weekend.values()) < sum(weekday.values())


def test_vehicle_mix_and_speed_falling_with_flow(demo: Scenario) -> None:
    sensor = demo.sensor("tc-thamrin-01")
    block = simulate_day(sensor, demo, 1, _day(2026, 9, 2))
    totals = {c: float(block.values[c].sum()) for c in ("sm", "kr", "kb")}
    share = {c: v / sum(totals.values()) for c, v in totals.items()}
    assert share["sm"] == pytest.approx(0.78, abs=0.02)
    assert share["kr"] == pytest.approx(0.20, abs=0.02)
    assert share["kb"] == pytest.approx(0.02, abs=0.01)
    flow = block.values["sm"] + block.values["kr"] + block.values["kb"]
    busy, quiet = flow > np.quantile(flow, 0.9), flow < np.quantile(flow, 0.1)
    assert block.values["speed"][busy].mean() < 0.8 * block.values["speed"][quiet].mean()
    assert np.all(block.values["sm"] == np.round(block.values["sm"]))


def test_incidents_cut_speed(demo: Scenario) -> None:
    base = demo.sensor("tc-medanmerdeka-01")
    calm = base.model.model_copy(update={"incidents_per_day": 0.0})
    stormy = base.model.model_copy(update={"incidents_per_day": 8.0})
    day = _day(2026, 9, 2)
    speeds = []
    for model in (calm, stormy):
        sensor = type(base)(base.spec, model, base.stream)
        speeds.append(simulate_day(sensor, demo, 1, day).values["speed"])
    assert speeds[1].min() < 0.7 * speeds[0].min()
