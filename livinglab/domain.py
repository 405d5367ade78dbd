"""The domain model: sensor kinds, quantities, units and windows.

Every name here is fixed by CONTRACT.md section 1. Quantities get a small integer code that is stored in the
database; codes are stable and must never be reused for another quantity.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType


class Kind(enum.StrEnum):
    """What a sensor measures; also the third level of its topic."""

    AIR = "air"
    TRAFFIC = "traffic"


#: The grammar of `city` and `sensor_id` (CONTRACT.md section 1).
IDENTIFIER_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
IDENTIFIER_RE = re.compile(rf"\A{IDENTIFIER_PATTERN}\Z")

#: Molar volume of an ideal gas at 25 C and 1 atm, in litres per mole (CONTRACT.md: ppb -> ug/m3 conversion).
MOLAR_VOLUME_L = 24.45


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit a device may report a quantity in, and how to turn it into the canonical unit.

    canonical = value * scale + offset
    """

    symbol: str
    scale: float = 1.0
    offset: float = 0.0

    def to_canonical(self, value: float) -> float:
        return value * self.scale + self.offset


@dataclass(frozen=True, slots=True)
class Quantity:
    """A measured quantity with its canonical unit, accepted units and default physical range."""

    name: str
    code: int
    kind: Kind
    unit: str
    units: Mapping[str, Unit]
    min_value: float
    max_value: float
    description: str
    #: True for per-interval counts (traffic classes), whose timestamp is the start of the counting interval.
    is_count: bool = False


def _mass_concentration_units(molar_mass_g_mol: float | None = None) -> dict[str, Unit]:
    units = {
        "ug/m3": Unit("ug/m3"),
        "mg/m3": Unit("mg/m3", scale=1e3),
        "kg/m3": Unit("kg/m3", scale=1e9),
    }
    if molar_mass_g_mol is not None:
        ppb = molar_mass_g_mol / MOLAR_VOLUME_L
        units["ppb"] = Unit("ppb", scale=ppb)
        units["ppm"] = Unit("ppm", scale=ppb * 1e3)
    return units


# Molar masses in g/mol (IUPAC standard atomic weights).
_MOLAR_MASS = {"no2": 46.0055, "so2": 64.066, "o3": 47.9982, "co": 28.0101}


def _build_quantities() -> tuple[Quantity, ...]:
    count = {"count": Unit("count"), "1": Unit("1")}
    return (
        Quantity("pm25", 1, Kind.AIR, "ug/m3", _mass_concentration_units(), 0.0, 2000.0, "PM2.5 mass concentration"),
        Quantity("pm10", 2, Kind.AIR, "ug/m3", _mass_concentration_units(), 0.0, 3000.0, "PM10 mass concentration"),
        Quantity(
            "no2",
            3,
            Kind.AIR,
            "ug/m3",
            _mass_concentration_units(_MOLAR_MASS["no2"]),
            0.0,
            20000.0,
            "nitrogen dioxide",
        ),
        Quantity(
            "so2",
            4,
            Kind.AIR,
            "ug/m3",
            _mass_concentration_units(_MOLAR_MASS["so2"]),
            0.0,
            20000.0,
            "sulphur dioxide",
        ),
        Quantity("o3", 5, Kind.AIR, "ug/m3", _mass_concentration_units(_MOLAR_MASS["o3"]), 0.0, 10000.0, "ozone"),
        Quantity(
            "co",
            6,
            Kind.AIR,
            "ug/m3",
            _mass_concentration_units(_MOLAR_MASS["co"]),
            0.0,
            200000.0,
            "carbon monoxide",
        ),
        Quantity("hc", 7, Kind.AIR, "ug/m3", _mass_concentration_units(), 0.0, 100000.0, "hydrocarbons"),
        Quantity(
            "temp",
            8,
            Kind.AIR,
            "Cel",
            {"Cel": Unit("Cel"), "K": Unit("K", offset=-273.15)},
            -50.0,
            70.0,
            "air temperature",
        ),
        Quantity("rh", 9, Kind.AIR, "%RH", {"%RH": Unit("%RH"), "%": Unit("%")}, 0.0, 100.0, "relative humidity"),
        Quantity(
            "sm",
            101,
            Kind.TRAFFIC,
            "count",
            count,
            0.0,
            100000.0,
            "motorcycles counted in the interval",
            is_count=True,
        ),
        Quantity(
            "kr",
            102,
            Kind.TRAFFIC,
            "count",
            count,
            0.0,
            100000.0,
            "light vehicles counted in the interval",
            is_count=True,
        ),
        Quantity(
            "kb",
            103,
            Kind.TRAFFIC,
            "count",
            count,
            0.0,
            100000.0,
            "heavy vehicles counted in the interval",
            is_count=True,
        ),
        Quantity(
            "speed",
            104,
            Kind.TRAFFIC,
            "km/h",
            {"km/h": Unit("km/h"), "m/s": Unit("m/s", scale=3.6)},
            0.0,
            300.0,
            "mean speed over the interval",
        ),
        Quantity(
            "occupancy",
            105,
            Kind.TRAFFIC,
            "%",
            {"%": Unit("%"), "/": Unit("/", scale=100.0)},
            0.0,
            100.0,
            "detector occupancy",
        ),
    )


QUANTITIES: Mapping[str, Quantity] = MappingProxyType({q.name: q for q in _build_quantities()})
QUANTITIES_BY_CODE: Mapping[int, Quantity] = MappingProxyType({q.code: q for q in QUANTITIES.values()})


def quantities_of(kind: Kind) -> tuple[Quantity, ...]:
    """The quantities a sensor of `kind` may report, in code order."""
    return tuple(q for q in QUANTITIES.values() if q.kind is kind)


class Window(enum.StrEnum):
    """Aggregation windows, aligned to UTC: [start, start + width)."""

    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def width(self) -> timedelta:
        return _WINDOW_WIDTH[self]

    @property
    def seconds(self) -> int:
        return int(_WINDOW_WIDTH[self].total_seconds())

    @property
    def table(self) -> str:
        """The aggregate table that stores this window (allow-listed SQL identifier)."""
        return _WINDOW_TABLE[self]


_WINDOW_WIDTH = {
    Window.MINUTE: timedelta(minutes=1),
    Window.HOUR: timedelta(hours=1),
    Window.DAY: timedelta(days=1),
}
_WINDOW_TABLE = {Window.MINUTE: "agg_1m", Window.HOUR: "agg_1h", Window.DAY: "agg_1d"}


class RoadType(enum.StrEnum):
    """Urban road types of PKJI 2023 (lanes / directions, T = divided, TT = undivided)."""

    TWO_LANE_UNDIVIDED = "2/2-TT"
    FOUR_LANE_DIVIDED = "4/2-T"
    SIX_LANE_DIVIDED = "6/2-T"
    ONE_WAY_TWO_LANE = "2/1"
    ONE_WAY_THREE_LANE = "3/1"


class RoadFunction(enum.StrEnum):
    """Road functions of Indonesian road law, which set the minimum level of service (PM 96/2015)."""

    ARTERI_PRIMER = "arteri_primer"
    KOLEKTOR_PRIMER = "kolektor_primer"
    LOKAL_PRIMER = "lokal_primer"
    JALAN_TOL = "jalan_tol"
    ARTERI_SEKUNDER = "arteri_sekunder"
    KOLEKTOR_SEKUNDER = "kolektor_sekunder"
    LOKAL_SEKUNDER = "lokal_sekunder"
    LINGKUNGAN = "lingkungan"


class RejectionReason(enum.StrEnum):
    """Why a message was rejected (CONTRACT.md sections 1 and 6, plus `retained_message`), in the order the checks
    run."""

    #: Delivered because it was retained on the broker (a copy of a message already delivered live, perhaps stored).
    RETAINED_MESSAGE = "retained_message"
    TOPIC_INVALID = "topic_invalid"
    UNKNOWN_SENSOR = "unknown_sensor"
    KIND_MISMATCH = "kind_mismatch"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_UTF8 = "invalid_utf8"
    NON_FINITE_VALUE = "non_finite_value"
    INVALID_JSON = "invalid_json"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_SHAPE = "invalid_shape"
    #: A LoRaWAN uplink without codec output (no `object` / `decoded_payload`): its device profile has no codec.
    UNDECODED_PAYLOAD = "undecoded_payload"
    UNKNOWN_QUANTITY = "unknown_quantity"
    BAD_UNIT = "bad_unit"
    #: A LoRaWAN uplink whose codec output has nothing that maps to a quantity.
    NO_READINGS = "no_readings"
    OUT_OF_RANGE = "out_of_range"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"


#: The reason codes only LoRaWAN uplinks can earn (CONTRACT.md section 6).
LORAWAN_REASONS: frozenset[RejectionReason] = frozenset(
    {RejectionReason.UNDECODED_PAYLOAD, RejectionReason.NO_READINGS}
)
#: The reason codes a section 1 message can earn from its topic, its payload or storage: every code but LoRaWAN's and
#: `retained_message` (a way of delivery, not a property of the message).
MESSAGE_REASONS: frozenset[RejectionReason] = (
    frozenset(RejectionReason) - LORAWAN_REASONS - {RejectionReason.RETAINED_MESSAGE}
)
