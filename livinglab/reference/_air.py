"""Air-quality reference tables: ISPU (Indonesia, 2020), US EPA AQI (2024) and the NowCast."""

from __future__ import annotations

import csv
import functools
import io
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from livinglab.domain import QUANTITIES


def _text(name: str) -> str:
    return resources.files("livinglab.reference").joinpath(name).read_text(encoding="utf-8")


def _csv_rows(name: str) -> list[dict[str, str]]:
    lines = [line for line in _text(name).splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@functools.cache
def _rules() -> dict[str, Any]:
    return tomllib.loads(_text("indices.toml"))


@dataclass(frozen=True, slots=True)
class IndexRules:
    """Rules shared by the air indices: hourly-mean validity and half-up rounding."""

    #: An hourly mean is valid at `count >= min_reading_fraction * 3600 / interval_s`.
    min_reading_fraction: float
    #: Added before the floor in half-up rounding.
    rounding_epsilon: float
    #: AQI truncation first rounds to this many significant digits (CONTRACT.md section 4: only binary
    #: floating-point error is forgiven, so 34.99999999999999 truncates to 35.0 and 34.9999999 to 34.9).
    truncation_significant_digits: int


@dataclass(frozen=True, slots=True)
class IspuCategory:
    """An ISPU category: values up to and including `top` (and above the previous category's top)."""

    top: int
    name: str
    colour: str
    colour_hex: str


@dataclass(frozen=True, slots=True)
class IspuTable:
    """ISPU breakpoints (Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020) and the 24-hour validity rule."""

    #: Parameters in tie-break order for the critical parameter.
    parameters: tuple[str, ...]
    categories: tuple[IspuCategory, ...]
    #: Per parameter, the 24-hour mean concentration (ug/m3) at the top of each category.
    concentration_tops: Mapping[str, tuple[float, ...]]
    hours: int
    min_valid_hours: int
    max_index: int

    def band_edges(self, parameter: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(concentrations, indices) at the band edges, starting at 0/0: contiguous bands, as the contract reads."""
        return (0.0, *self.concentration_tops[parameter]), (0.0, *(float(c.top) for c in self.categories))

    def category(self, ispu: int) -> IspuCategory:
        """The category an ISPU value falls in (values above the last top fall in the last category)."""
        for category in self.categories:
            if ispu <= category.top:
                return category
        return self.categories[-1]


@dataclass(frozen=True, slots=True)
class AqiCategory:
    """An AQI category: index values `index_lo` .. `index_hi`."""

    index_lo: int
    index_hi: int
    name: str
    colour_hex: str


@dataclass(frozen=True, slots=True)
class AqiPollutant:
    """How one pollutant enters the AQI: averaging, breakpoint column, unit and truncation."""

    name: str
    method: Literal["nowcast", "mean"]
    column: str
    unit: Literal["ug/m3", "ppm", "ppb"]
    decimals: int
    hours: int = 1
    min_valid_hours: int = 1
    above_range_column: str | None = None
    high_index_from: int | None = None
    high_hours: int | None = None
    high_min_valid_hours: int | None = None

    @property
    def ug_m3_per_unit(self) -> float:
        """Micrograms per cubic metre in one breakpoint unit (at 25 C and 1 atm for ppm and ppb)."""
        if self.unit == "ug/m3":
            return 1.0
        return QUANTITIES[self.name].units[self.unit].scale


@dataclass(frozen=True, slots=True)
class AqiTable:
    """US EPA AQI breakpoints (40 CFR 58 App. G, 2024) and how each pollutant is averaged."""

    categories: tuple[AqiCategory, ...]
    #: Per breakpoint column, per category: (lo, hi) or None where the table leaves the cell empty.
    breakpoints: Mapping[str, tuple[tuple[float, float] | None, ...]]
    #: Pollutants in tie-break order for the dominant pollutant.
    pollutants: Mapping[str, AqiPollutant]
    max_index: int

    def category(self, aqi: int) -> AqiCategory:
        """The category an AQI value falls in (values above the table fall in the last category)."""
        for category in self.categories:
            if aqi <= category.index_hi:
                return category
        return self.categories[-1]


@dataclass(frozen=True, slots=True)
class NowcastParameters:
    """EPA NowCast: `hours` hourly means, valid with `min_recent_hours` of the `recent_hours` latest."""

    hours: int
    recent_hours: int
    min_recent_hours: int
    min_weight: float


@functools.cache
def index_rules() -> IndexRules:
    """Hourly-mean validity, rounding and truncation rules of the air indices."""
    rules = _rules()
    return IndexRules(
        min_reading_fraction=float(rules["hourly_mean"]["min_reading_fraction"]),
        rounding_epsilon=float(rules["rounding"]["epsilon"]),
        truncation_significant_digits=int(rules["rounding"]["truncation_significant_digits"]),
    )


@functools.cache
def ispu_table() -> IspuTable:
    """The ISPU table of `ispu_2020.csv` with the rules of `indices.toml`."""
    rows = _csv_rows("ispu_2020.csv")
    rules = _rules()["ispu"]
    parameters = tuple(rules["parameters"])
    return IspuTable(
        parameters=parameters,
        categories=tuple(IspuCategory(int(r["ispu_top"]), r["category"], r["colour"], r["colour_hex"]) for r in rows),
        concentration_tops=MappingProxyType({p: tuple(float(r[p]) for r in rows) for p in parameters}),
        hours=int(rules["hours"]),
        min_valid_hours=int(rules["min_valid_hours"]),
        max_index=int(rules["max_index"]),
    )


@functools.cache
def aqi_table() -> AqiTable:
    """The AQI table of `aqi_epa_2024.csv` with the averaging choices of `indices.toml`."""
    rows = _csv_rows("aqi_epa_2024.csv")
    rules = _rules()["aqi"]
    colours = rules["colours"]
    columns = sorted({name[: -len("_lo")] for name in rows[0] if name.endswith("_lo") and name != "aqi_lo"})
    breakpoints = {
        column: tuple(
            (float(r[f"{column}_lo"]), float(r[f"{column}_hi"])) if r[f"{column}_lo"] and r[f"{column}_hi"] else None
            for r in rows
        )
        for column in columns
    }
    pollutants = {name: AqiPollutant(name=name, **spec) for name, spec in rules["pollutants"].items()}
    for pollutant in pollutants.values():
        for column in (pollutant.column, pollutant.above_range_column):
            if column is not None and column not in breakpoints:
                raise ValueError(f"indices.toml names AQI column {column!r}, which aqi_epa_2024.csv lacks")
    return AqiTable(
        categories=tuple(
            AqiCategory(int(r["aqi_lo"]), int(r["aqi_hi"]), r["category"], colours[r["category"]]) for r in rows
        ),
        breakpoints=MappingProxyType(breakpoints),
        pollutants=MappingProxyType(pollutants),
        max_index=int(rules["max_index"]),
    )


@functools.cache
def nowcast_parameters() -> NowcastParameters:
    """NowCast parameters of `indices.toml`."""
    rules = _rules()["nowcast"]
    return NowcastParameters(
        hours=int(rules["hours"]),
        recent_hours=int(rules["recent_hours"]),
        min_recent_hours=int(rules["min_recent_hours"]),
        min_weight=float(rules["min_weight"]),
    )
