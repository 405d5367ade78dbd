"""City scenarios: districts with outlines, and sensors with their registry attributes and device parameters.

A scenario is a YAML file. Each sensor entry holds the registry fields of CONTRACT.md section 2 and, under `model`,
the simulator's own parameters of its device (never sent to the registry). `defaults.air` / `defaults.traffic` are
merged under every sensor of that kind, and a `generate` block places many sensors in every district (the large
load scenario is written that way). Shipped scenarios are loaded by name (`demo`, `large`, `two-cities`).

```yaml
city: jakarta
timezone_offset_h: 7
districts:
  - {name: Menteng, outline: [[-6.180, 106.823], [-6.182, 106.846], ...]}   # lat, lon
sensors:
  - {sensor_id: aq-menteng-01, kind: air, district: Menteng, lat: -6.1955, lon: 106.8322, interval_s: 60,
     model: {profile: reference, pm25_scale: 1.1}}
```

A scenario of several cities lists them under `cities:`, each with its own `districts`, `defaults`, `sensors` and
`generate` (top-level `defaults` apply to every city; the time zone is the scenario's). Each city has its own
weather; everything else about a sensor is drawn as in a one-city scenario.

```yaml
timezone_offset_h: 7
cities:
  - {city: jakarta, districts: [...], sensors: [...]}
  - {city: bandung, districts: [...], sensors: [...]}
```
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livinglab.domain import Kind
from livinglab.errors import ConfigurationError
from livinglab.sensors import SensorSpec
from simulators.models import AirModel, TrafficModel

SHIPPED = ("demo", "large", "two-cities")


@dataclass(frozen=True, slots=True)
class District:
    """A district and its outline: a closed ring of (lat, lon) points (first point not repeated). An empty `city`
    is the scenario's (first) city."""

    name: str
    outline: tuple[tuple[float, float], ...] = ()
    city: str = ""

    def contains(self, lat: float, lon: float) -> bool:
        """Whether a point lies inside the outline (ray casting; False when there is no outline)."""
        inside = False
        ring = self.outline
        for i, (lat_a, lon_a) in enumerate(ring):
            lat_b, lon_b = ring[i - 1]
            if (lat_a > lat) != (lat_b > lat):
                crossing = lon_a + (lat - lat_a) * (lon_b - lon_a) / (lat_b - lat_a)
                if lon < crossing:
                    inside = not inside
        return inside


@dataclass(frozen=True, slots=True)
class SimSensor:
    """A simulated device: its registry entry, its device parameters and a stable number for its random streams."""

    spec: SensorSpec
    model: AirModel | TrafficModel
    stream: int

    @property
    def sensor_id(self) -> str:
        return self.spec.sensor_id

    @property
    def kind(self) -> Kind:
        return self.spec.kind


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulated city, or several (`cities`; `city` is the first)."""

    name: str
    city: str
    timezone_offset_h: float
    districts: tuple[District, ...]
    sensors: tuple[SimSensor, ...]
    #: When the devices were installed: sensor drift grows from here.
    deployed_at_s: float = 0.0
    description: str = ""
    _by_id: dict[str, SimSensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({s.sensor_id: s for s in self.sensors})

    @property
    def cities(self) -> tuple[str, ...]:
        """Every city of the scenario, the first one first, then in the order they appear."""
        found = [self.city, *(d.city for d in self.districts if d.city), *(s.spec.city for s in self.sensors)]
        return tuple(dict.fromkeys(found))

    def district_city(self, district: District) -> str:
        return district.city or self.city

    def city_stream(self, city: str) -> int:
        """The random stream of a city's weather: 0 for the first city (so a one-city scenario plays as it always
        did), a stable number of its name for the others."""
        return 0 if city == self.city else stream_number(f"city:{city}")

    @property
    def specs(self) -> tuple[SensorSpec, ...]:
        """The registry entries of every sensor."""
        return tuple(s.spec for s in self.sensors)

    def sensor(self, sensor_id: str) -> SimSensor:
        return self._by_id[sensor_id]

    def count(self, kind: Kind) -> int:
        return sum(1 for s in self.sensors if s.kind is kind)

    def subset(self, sensor_ids: Sequence[str]) -> Scenario:
        """The same city with only the given sensors (for splitting work between publisher processes)."""
        keep = set(sensor_ids)
        return Scenario(
            self.name,
            self.city,
            self.timezone_offset_h,
            self.districts,
            tuple(s for s in self.sensors if s.sensor_id in keep),
            self.deployed_at_s,
            self.description,
        )


def stream_number(sensor_id: str) -> int:
    """A stable 32-bit number for a sensor id (Python's `hash` is salted per process, so it cannot be used)."""
    return zlib.crc32(sensor_id.encode("utf-8"))


class _DistrictEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    outline: list[tuple[float, float]] = Field(default_factory=list)


class _GenerateEntry(BaseModel):
    """Sensors placed uniformly at random inside every district's outline."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    air_per_district: int = Field(default=0, ge=0)
    traffic_per_district: int = Field(default=0, ge=0)
    #: Road kinds of generated traffic counters, drawn with their `weight`: registry fields plus `model`.
    roads: list[dict[str, Any]] = Field(default_factory=list)
    #: Air station kinds, drawn with their `weight`: registry fields plus `model`.
    stations: list[dict[str, Any]] = Field(default_factory=lambda: [{"weight": 1}])


class _CityEntry(BaseModel):
    """One city's part of a scenario."""

    model_config = ConfigDict(extra="forbid")
    city: str
    districts: list[_DistrictEntry] = Field(default_factory=list)
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sensors: list[dict[str, Any]] = Field(default_factory=list)
    generate: _GenerateEntry | None = None


class _ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str | None = None
    cities: list[_CityEntry] = Field(default_factory=list)
    timezone_offset_h: float = 0.0
    description: str = ""
    deployed: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    districts: list[_DistrictEntry] = Field(default_factory=list)
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sensors: list[dict[str, Any]] = Field(default_factory=list)
    generate: _GenerateEntry | None = None

    def city_entries(self) -> list[_CityEntry]:
        """The cities, each with its own part (a one-city file is one entry with the top-level parts)."""
        if self.city is not None and self.cities:
            raise ValueError("give either `city` or `cities`, not both")
        if self.cities:
            if self.districts or self.sensors or self.generate is not None:
                raise ValueError("with `cities`, districts, sensors and generate go under each city")
            return [c.model_copy(update={"defaults": _merge_defaults(self.defaults, c.defaults)}) for c in self.cities]
        if self.city is None:
            raise ValueError("a scenario needs `city` or `cities`")
        return [_CityEntry(**self.model_dump(include={"city", "districts", "defaults", "sensors", "generate"}))]


def _merge_defaults(base: Mapping[str, dict[str, Any]], own: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kind: _merge(base.get(kind, {}), own.get(kind, {})) for kind in {*base, *own}}


def _merge(base: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**base, **entry}
    merged["model"] = {**base.get("model", {}), **entry.get("model", {})}
    return merged


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _random_point(rng: np.random.Generator, district: District) -> tuple[float, float]:
    lats = [p[0] for p in district.outline]
    lons = [p[1] for p in district.outline]
    for _ in range(1000):
        lat = round(float(rng.uniform(min(lats), max(lats))), 5)
        lon = round(float(rng.uniform(min(lons), max(lons))), 5)
        if district.contains(lat, lon):
            return lat, lon
    raise ConfigurationError(f"could not place a sensor inside district {district.name!r}")


def _pick(rng: np.random.Generator, options: list[dict[str, Any]]) -> dict[str, Any]:
    weights = np.array([float(o.get("weight", 1.0)) for o in options])
    chosen = options[int(rng.choice(len(options), p=weights / weights.sum()))]
    return {k: v for k, v in chosen.items() if k != "weight"}


def _generated(spec: _GenerateEntry, districts: Sequence[District]) -> list[dict[str, Any]]:
    """Sensor entries for a `generate` block, deterministic for its seed."""
    rng = np.random.default_rng(spec.seed)
    entries: list[dict[str, Any]] = []
    for district in districts:
        if not district.outline:
            raise ConfigurationError(f"generate needs an outline for district {district.name!r}")
        slug = _slug(district.name)
        for kind, count, options in (
            ("air", spec.air_per_district, spec.stations),
            ("traffic", spec.traffic_per_district, spec.roads),
        ):
            prefix = "aq" if kind == "air" else "tc"
            for number in range(1, count + 1):
                lat, lon = _random_point(rng, district)
                entry = {"kind": kind, "district": district.name, "lat": lat, "lon": lon, **_pick(rng, options)}
                entry["sensor_id"] = f"{prefix}-{slug}-{number:03d}"
                entries.append(entry)
    return entries


def _build_sensor(entry: dict[str, Any], city: str) -> SimSensor:
    model_fields = entry.pop("model", {}) or {}
    spec = SensorSpec.model_validate({"city": city, **entry})
    model: AirModel | TrafficModel = (
        AirModel.model_validate(model_fields) if spec.kind is Kind.AIR else TrafficModel.model_validate(model_fields)
    )
    return SimSensor(spec, model, stream_number(spec.sensor_id))


def _city_sensors(entry: _CityEntry, districts: Sequence[District], name: str) -> list[SimSensor]:
    entries = list(entry.sensors)
    if entry.generate is not None:
        entries += _generated(entry.generate, districts)
    known = {d.name for d in districts}
    sensors: list[SimSensor] = []
    for raw in entries:
        kind = raw.get("kind")
        merged = _merge(entry.defaults.get(str(kind), {}), raw)
        try:
            sensor = _build_sensor(merged, entry.city)
        except ValidationError as exc:
            raise ConfigurationError(f"scenario {name}: sensor {raw.get('sensor_id')!r}: {exc}") from exc
        if known and sensor.spec.district not in known:
            raise ConfigurationError(f"scenario {name}: sensor {sensor.sensor_id!r} is in an undeclared district")
        sensors.append(sensor)
    return sensors


def parse_scenario(text: str, name: str = "scenario") -> Scenario:
    """A scenario from YAML text. Raises ConfigurationError naming what is wrong."""
    try:
        data = _ScenarioFile.model_validate(yaml.safe_load(text))
        entries = data.city_entries()
    except (ValidationError, ValueError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"scenario {name}: {exc}") from exc
    all_districts: list[District] = []
    sensors: list[SimSensor] = []
    for entry in entries:
        districts = [
            District(d.name, tuple((float(a), float(b)) for a, b in d.outline), entry.city) for d in entry.districts
        ]
        all_districts += districts
        sensors += _city_sensors(entry, districts, name)
    ids = [s.sensor_id for s in sensors]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"scenario {name}: sensor ids repeat")
    cities = [e.city for e in entries]
    if len(set(cities)) != len(cities):
        raise ConfigurationError(f"scenario {name}: a city is listed twice")
    return Scenario(
        name=name,
        city=entries[0].city,
        timezone_offset_h=data.timezone_offset_h,
        districts=tuple(all_districts),
        sensors=tuple(sensors),
        deployed_at_s=data.deployed.timestamp(),
        description=data.description,
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (`demo`, `large`, `two-cities`) or a YAML file by path."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        text = resources.files("simulators.scenarios").joinpath(f"{name_or_path}.yaml").read_text("utf-8")
        return parse_scenario(text, name_or_path)
    path = Path(name_or_path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        shipped = ", ".join(SHIPPED)
        raise ConfigurationError(f"scenario {name_or_path}: not a shipped scenario ({shipped}) and {exc}") from exc
    return parse_scenario(text, path.stem)
