"""The sensor registry's domain model: what a sensor is and which attributes it must carry.

`SensorSpec` validates a registry entry wherever one comes from (the API, a YAML or CSV import, a simulator
scenario). Field names are fixed by CONTRACT.md sections 2 and 6 (`dev_eui`, `field_map` for LoRaWAN sensors).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from livinglab.domain import IDENTIFIER_PATTERN, Kind, RoadFunction, RoadType
from livinglab.field_maps import DevEui, FieldMap, field_map_problems

Identifier = Annotated[str, Field(pattern=rf"^{IDENTIFIER_PATTERN}$", min_length=1, max_length=64)]

#: Attributes that only traffic counters carry.
TRAFFIC_FIELDS = (
    "road_type",
    "lanes",
    "lane_width_m",
    "carriageway_width_m",
    "direction_split_pct",
    "road_function",
    "city_population",
    "side_friction_factor",
    "capacity_override_pcu_h",
)
#: Traffic attributes without which capacity and LOS cannot be computed.
REQUIRED_TRAFFIC_FIELDS = ("road_type", "lanes", "road_function", "city_population")


class SensorSpec(BaseModel):
    """A registry entry. Traffic attributes are required for traffic counters and must be absent for air stations."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    sensor_id: Identifier
    city: Identifier
    district: str = Field(min_length=1, max_length=100)
    kind: Kind
    name: str | None = Field(default=None, max_length=200, description="Display name; defaults to the id.")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    interval_s: int = Field(default=60, ge=1, le=86400, description="Reporting interval in seconds.")
    road_type: RoadType | None = None
    lanes: int | None = Field(
        default=None, ge=1, le=12, description="Lanes in the measured direction (2/2-TT: both directions)."
    )
    lane_width_m: float | None = Field(default=None, gt=0, le=10)
    carriageway_width_m: float | None = Field(default=None, gt=0, le=40, description="2/2-TT only.")
    direction_split_pct: float | None = Field(default=None, ge=50, le=100, description="2/2-TT only.")
    road_function: RoadFunction | None = None
    city_population: int | None = Field(default=None, ge=0)
    side_friction_factor: float | None = Field(default=None, gt=0, le=2, description="FCHS.")
    capacity_override_pcu_h: float | None = Field(default=None, gt=0)
    dev_eui: DevEui | None = None
    field_map: FieldMap | None = Field(
        default=None,
        description="LoRaWAN codec output to quantities: member name (or JSON Pointer) -> quantity name, "
        '`{"quantity": ..., "unit": ...}`, or null to ignore the member (docs/devices.md).',
    )

    @field_validator("field_map", mode="before")
    @classmethod
    def _field_map_from_text(cls, value: Any) -> Any:
        # A CSV cell holds the map as JSON text.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("field_map must be a JSON object") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("name"):
            data["name"] = data.get("sensor_id")
        if data.get("kind") in (Kind.TRAFFIC, "traffic"):
            data.setdefault("lane_width_m", 3.5)
            data.setdefault("side_friction_factor", 1.0)
            if data.get("road_type") in (RoadType.TWO_LANE_UNDIVIDED, "2/2-TT"):
                data.setdefault("carriageway_width_m", 7.0)
                data.setdefault("direction_split_pct", 50.0)
        return data

    @model_validator(mode="after")
    def _check_kind_attributes(self) -> Self:
        if self.kind is Kind.TRAFFIC:
            missing = [f for f in REQUIRED_TRAFFIC_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"traffic sensors need {', '.join(missing)}")
            if self.road_type is not RoadType.TWO_LANE_UNDIVIDED and (
                self.carriageway_width_m is not None or self.direction_split_pct is not None
            ):
                raise ValueError("carriageway_width_m and direction_split_pct apply to 2/2-TT roads only")
        else:
            present = [f for f in TRAFFIC_FIELDS if getattr(self, f) is not None]
            if present:
                raise ValueError(f"air stations take no traffic attributes ({', '.join(present)})")
        if self.field_map:
            problems = field_map_problems(self.field_map, self.kind)
            if problems:
                raise ValueError(f"field_map: {'; '.join(problems)}")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.sensor_id
