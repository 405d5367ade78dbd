"""City scenarios: districts and sensors with their registry attributes, loaded from YAML."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from livinglab.sensors import SensorSpec

SHIPPED = ("demo",)


@dataclass(frozen=True, slots=True)
class Scenario:
    city: str
    timezone_offset_h: float
    districts: tuple[str, ...]
    sensors: tuple[SensorSpec, ...]


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (`demo`) or a YAML file by path."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        text = resources.files("simulators.scenarios").joinpath(f"{name_or_path}.yaml").read_text("utf-8")
    else:
        text = Path(name_or_path).read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    city = data["city"]
    sensors = tuple(SensorSpec.model_validate({"city": city, **s}) for s in data.get("sensors", []))
    return Scenario(
        city=city,
        timezone_offset_h=float(data.get("timezone_offset_h", 0)),
        districts=tuple(d["name"] for d in data.get("districts", [])),
        sensors=sensors,
    )
