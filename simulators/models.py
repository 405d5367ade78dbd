"""Device parameters of simulated sensors (the `model` block of a scenario's sensor) and the city's profiles.

Figures follow reference/simulation.md (Jakarta-like): PM2.5 annual mean about 41 ug/m3 with a dry season (Jun-Oct)
of 50-57 and a rainy season (Dec-Feb) of 15-20, highest from night to morning and lowest in the afternoon; PM10
1.4-1.8 x PM2.5; traffic with 78/20/2 % motorcycles/light/heavy vehicles, weekday peaks 07:00-09:00 and
17:00-18:00 local time and a flatter weekend, peak-hour DJ 0.85-1.05 on busy arterials.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from livinglab.domain import QUANTITIES, Kind, RoadType

PayloadFormat = Literal["senml", "json"]

#: PM2.5 monthly means in ug/m3, January..December (annual mean about 41).
PM25_MONTHLY = np.array([20.0, 18.0, 28.0, 37.0, 47.0, 54.0, 57.0, 58.0, 56.0, 51.0, 39.0, 23.0])

#: PM2.5 relative level by local hour 0..23: high from night to morning (peak 07:00-09:00), lowest mid-afternoon.
PM25_DIURNAL = np.array(
    [1.15, 1.10, 1.00, 0.98, 1.00, 1.10, 1.30, 1.50, 1.55, 1.35, 1.05, 0.85, 0.72, 0.65, 0.60, 0.60, 0.65, 0.78,
     0.92, 1.05, 1.12, 1.18, 1.20, 1.18]
)  # fmt: skip

#: Weekday hourly weights of daily two-way volume, local hours 0..23 (reference/simulation.md; they add to 101.5).
WEEKDAY_TRAFFIC = np.array(
    [1.0, 0.7, 0.5, 0.5, 0.9, 2.6, 5.6, 7.4, 7.2, 6.0, 5.2, 5.1, 5.0, 5.0, 5.2, 5.6, 6.6, 7.6, 7.3, 5.6, 4.2, 3.1,
     2.2, 1.4]
)  # fmt: skip
#: Weekend weights: a flatter, later morning, a busy midday and evening.
WEEKEND_TRAFFIC = np.array(
    [1.4, 0.9, 0.6, 0.5, 0.6, 1.2, 2.4, 3.6, 4.6, 5.4, 5.8, 6.0, 6.0, 5.9, 5.8, 5.9, 6.2, 6.6, 6.6, 6.0, 5.2, 4.2,
     3.2, 2.1]
)  # fmt: skip
#: Weekend daily volume relative to a weekday.
WEEKEND_VOLUME = 0.85

#: Free-flow speed in km/h by road type (urban Jakarta, typical).
FREE_FLOW_KMH = {
    RoadType.TWO_LANE_UNDIVIDED: 40.0,
    RoadType.FOUR_LANE_DIVIDED: 55.0,
    RoadType.SIX_LANE_DIVIDED: 60.0,
    RoadType.ONE_WAY_TWO_LANE: 45.0,
    RoadType.ONE_WAY_THREE_LANE: 50.0,
}

#: Quantities of the two kinds of air station.
AIR_PROFILES: dict[str, tuple[str, ...]] = {
    "low_cost": ("pm25", "pm10", "temp", "rh"),
    "reference": ("pm25", "pm10", "no2", "so2", "o3", "co", "hc", "temp", "rh"),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Payload form: SenML packs (RFC 8428) or simple JSON objects.
    payload: PayloadFormat = "senml"
    #: Units to report quantities in, when not the canonical one (e.g. `{no2: ppb, co: ppm}`; SenML only).
    units: dict[str, str] = Field(default_factory=dict)
    #: A LoRaWAN sensor: its uplinks reach the platform as this network server publishes them (simulators.lorawan).
    network: Literal["chirpstack", "tts"] | None = None

    def _check_units(self, kind: Kind, quantities: tuple[str, ...]) -> None:
        for name, unit in self.units.items():
            quantity = QUANTITIES.get(name)
            if quantity is None or quantity.kind is not kind or name not in quantities:
                raise ValueError(f"units: {name!r} is not a reported {kind.value} quantity")
            if unit not in quantity.units:
                raise ValueError(f"units: {unit!r} is not accepted for {name}")
        if self.units and self.payload != "senml" and self.network is None:
            raise ValueError("units other than the canonical ones need SenML payloads (or a LoRaWAN codec)")


class AirModel(_Model):
    """An air-quality station."""

    #: `low_cost` (PM, temperature, humidity) or `reference` (also NO2, SO2, O3, CO, HC).
    profile: Literal["low_cost", "reference"] = "low_cost"
    #: Overrides the profile's quantities.
    quantities: tuple[str, ...] | None = None
    #: The station's PM level relative to the city (local sources, height, ventilation).
    pm25_scale: float = Field(default=1.0, gt=0, le=5)
    #: PM10 / PM2.5 (reference/simulation.md: 1.4-1.8 in urban Jakarta, to verify).
    pm10_ratio: float = Field(default=1.6, ge=1.0, le=4.0)
    #: Gain drift of the PM sensor, in percent per 30 days since deployment (low-cost optical sensors drift).
    drift_pct_per_30d: float = Field(default=0.0, ge=-20, le=20)
    #: Relative white noise of each reading.
    noise: float = Field(default=0.04, ge=0, le=0.5)

    @model_validator(mode="after")
    def _check(self) -> AirModel:
        for name in self.reported:
            if name not in QUANTITIES or QUANTITIES[name].kind is not Kind.AIR:
                raise ValueError(f"{name!r} is not an air quantity")
        self._check_units(Kind.AIR, self.reported)
        return self

    @property
    def reported(self) -> tuple[str, ...]:
        return self.quantities or AIR_PROFILES[self.profile]


class TrafficModel(_Model):
    """A traffic counter."""

    #: Degree of saturation at the busiest weekday hour (busy arterials 0.85-1.05, quiet streets 0.3-0.6).
    peak_dj: float = Field(default=0.9, gt=0, le=1.6)
    #: Vehicle mix: shares of motorcycles, light and heavy vehicles (Dishub DKI, Sep 2023: 78/20/2 %).
    mix: tuple[float, float, float] = (0.78, 0.20, 0.02)
    #: Free-flow speed; default by road type.
    free_flow_kmh: float | None = Field(default=None, gt=0, le=150)
    #: Incidents (breakdowns, crashes, flooding) per day: capacity drops for 15-120 minutes.
    incidents_per_day: float = Field(default=0.15, ge=0, le=10)
    #: Reported quantities: counts per class, mean speed and optionally detector occupancy.
    quantities: tuple[str, ...] = ("sm", "kr", "kb", "speed")

    @model_validator(mode="after")
    def _check(self) -> TrafficModel:
        if abs(sum(self.mix) - 1.0) > 1e-6 or min(self.mix) < 0:
            raise ValueError("mix must be three non-negative shares adding up to 1")
        for name in self.quantities:
            if name not in QUANTITIES or QUANTITIES[name].kind is not Kind.TRAFFIC:
                raise ValueError(f"{name!r} is not a traffic quantity")
        self._check_units(Kind.TRAFFIC, self.quantities)
        return self

    @property
    def reported(self) -> tuple[str, ...]:
        return self.quantities


def hourly_profile(weights: npt.NDArray[np.float64], local_hours: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A 24-hour profile given per hour, read at fractional local hours: linear between hour centres, circular."""
    centres = np.arange(-0.5, 25.0, 1.0)
    values = np.concatenate(([weights[-1]], weights, [weights[0]]))
    return np.interp(np.mod(local_hours, 24.0), centres, values)


def seasonal_pm25(day_of_year: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """PM2.5 seasonal level in ug/m3: monthly means placed mid-month, linear between them, circular."""
    mid_month = (np.arange(12) + 0.5) * 365.25 / 12
    x = np.concatenate(([mid_month[-1] - 365.25], mid_month, [mid_month[0] + 365.25]))
    y = np.concatenate(([PM25_MONTHLY[-1]], PM25_MONTHLY, [PM25_MONTHLY[0]]))
    level: npt.NDArray[np.float64] = np.interp(np.mod(day_of_year, 365.25), x, y)
    return level
