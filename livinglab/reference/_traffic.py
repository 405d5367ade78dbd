"""Urban road traffic reference (PKJI 2023, PM 96/2015): capacity, ekr factors, LOS bands, minimum LOS."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from livinglab.domain import RoadFunction, RoadType


@dataclass(frozen=True, slots=True)
class Curve:
    """A factor given at points `x`, linear between them and clamped outside (as PKJI's tables are read)."""

    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EkrFactors:
    """ekr per vehicle class for one flow band. `sm_narrow`/`sm_wide` apply to 2/2-TT, `sm` to the others."""

    kr: float
    kb: float
    sm: float | None = None
    sm_narrow: float | None = None
    sm_wide: float | None = None


@dataclass(frozen=True, slots=True)
class EkrRule:
    """The ekr of a road type: `low` below `threshold_veh_h` of flow (two-way or per lane), `high` at or above."""

    flow_basis: Literal["two_way", "per_lane"]
    threshold_veh_h: float
    low: EkrFactors
    high: EkrFactors
    narrow_carriageway_max_m: float | None = None


@dataclass(frozen=True, slots=True)
class PkjiTables:
    """Capacity, ekr and level-of-service constants of `pkji_2023.toml`."""

    base_capacity_pcu_h: Mapping[RoadType, float]
    per_lane: Mapping[RoadType, bool]
    lane_width_factor: Curve
    carriageway_width_factor: Curve
    direction_split_factor: Curve
    city_size_min_population: tuple[int, ...]
    city_size_factor: tuple[float, ...]
    ekr: Mapping[RoadType, EkrRule]
    dj_decimals: int
    los_letters: tuple[str, ...]
    los_max_dj: tuple[float, ...]
    los_above: str
    minimum_los: Mapping[RoadFunction, str]

    def los_rank(self, letter: str) -> int:
        """0 for the best letter (A), increasing towards F."""
        return (*self.los_letters, self.los_above).index(letter)


def _curve(table: Mapping[str, Any], x_name: str) -> Curve:
    x = tuple(float(v) for v in table[x_name])
    y = tuple(float(v) for v in table["factor"])
    if len(x) != len(y) or list(x) != sorted(x):
        raise ValueError(f"pkji_2023.toml: a curve over {x_name} needs increasing points, one factor each")
    return Curve(x, y)


@functools.cache
def pkji_tables() -> PkjiTables:
    """The PKJI 2023 / PM 96/2015 constants, loaded once."""
    data = tomllib.loads(resources.files("livinglab.reference").joinpath("pkji_2023.toml").read_text("utf-8"))
    capacity = data["capacity"]
    ekr: dict[RoadType, EkrRule] = {}
    for rule in data["ekr"]:
        parsed = EkrRule(
            flow_basis=rule["flow_basis"],
            threshold_veh_h=float(rule["threshold_veh_h"]),
            low=EkrFactors(**rule["low"]),
            high=EkrFactors(**rule["high"]),
            narrow_carriageway_max_m=rule.get("narrow_carriageway_max_m"),
        )
        for road_type in rule["road_types"]:
            ekr[RoadType(road_type)] = parsed
    los = data["los"]
    tables = PkjiTables(
        base_capacity_pcu_h=MappingProxyType({RoadType(k): float(v) for k, v in capacity["base_pcu_h"].items()}),
        per_lane=MappingProxyType({RoadType(k): bool(v) for k, v in capacity["per_lane"].items()}),
        lane_width_factor=_curve(capacity["lane_width_factor"], "width_m"),
        carriageway_width_factor=_curve(capacity["carriageway_width_factor"], "width_m"),
        direction_split_factor=_curve(capacity["direction_split_factor"], "split_pct"),
        city_size_min_population=tuple(int(v) for v in capacity["city_size_factor"]["min_population"]),
        city_size_factor=tuple(float(v) for v in capacity["city_size_factor"]["factor"]),
        ekr=MappingProxyType(ekr),
        dj_decimals=int(los["dj_decimals"]),
        los_letters=tuple(los["letters"]),
        los_max_dj=tuple(float(v) for v in los["max_dj"]),
        los_above=str(los["above"]),
        minimum_los=MappingProxyType({RoadFunction(k): str(v) for k, v in los["minimum_by_function"].items()}),
    )
    missing = set(RoadType) - set(tables.base_capacity_pcu_h) | (set(RoadType) - set(tables.ekr))
    if missing or set(RoadFunction) - set(tables.minimum_los):
        raise ValueError("pkji_2023.toml must cover every road type and road function")
    return tables
