"""Sensor registry files: YAML or CSV lists of sensors for bulk import (`livinglab sensors import FILE`).

YAML: a list of mappings, or a mapping with a `sensors:` list; keys are the sensor fields of CONTRACT.md section 2.
CSV: a header row of field names, then one sensor per row; empty cells take the field's default (a `field_map` cell
holds JSON). Every entry is validated with `SensorSpec`; a file with any invalid entry (or two entries with one
sensor id or DevEUI) is refused whole, naming each bad entry.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from livinglab.errors import LivinglabError
from livinglab.sensors import SensorSpec

Spec = TypeVar("Spec", bound=BaseModel)


class SensorFileError(LivinglabError):
    """A sensor file that cannot be read or holds invalid entries."""


def read_text(path: Path, error: type[LivinglabError]) -> str:
    """The text of a UTF-8 file (a byte order mark is dropped); raises `error` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc


def yaml_entries(text: str, key: str, error: type[LivinglabError]) -> list[Any]:
    """The entries of a YAML file holding a list, or a mapping with a `key:` list (raises `error` otherwise)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {exc}") from exc
    if isinstance(data, Mapping) and key in data:
        data = data[key]
    if data is None:
        return []
    if not isinstance(data, list):
        raise error(f"a YAML {key} file holds a list of {key}, or a mapping with a `{key}:` list")
    return data


def validation_problems(exc: ValidationError, what: str) -> str:
    """A pydantic error as one line: `field: message; ...` (`what` names an error of the whole entry)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors())


def validated_entries(rows: list[Any], model: type[Spec], what: str, problems: list[str]) -> Iterator[tuple[int, Spec]]:
    """The entries of a file that validate as `model`, numbered from 1; each other entry is described in `problems`
    (`what` names the kind of entry: `sensor` or `rule`, whose `sensor_id` or `rule_id` names a bad entry)."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            problems.append(f"entry {number}: not a mapping of {what} fields")
            continue
        try:
            spec = model.model_validate(dict(row))
        except ValidationError as exc:
            problems.append(f"entry {number} ({row.get(f'{what}_id', '?')}): {validation_problems(exc, what)}")
            continue
        yield number, spec


def _rows_from_csv(text: str) -> list[Any]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        return []
    unknown = [f for f in reader.fieldnames if f not in SensorSpec.model_fields]
    if unknown:
        raise SensorFileError(f"unknown CSV columns: {', '.join(unknown)}")
    # Empty cells mean "not given" so that defaults apply; pydantic converts the remaining strings.
    return [{k: v.strip() for k, v in row.items() if v is not None and v.strip() != ""} for row in reader]


def parse_sensors(text: str, *, fmt: str) -> list[SensorSpec]:
    """Sensors from the text of a `yaml` or `csv` file; raises SensorFileError listing every invalid entry."""
    if fmt == "yaml":
        rows = yaml_entries(text, "sensors", SensorFileError)
    elif fmt == "csv":
        rows = _rows_from_csv(text)
    else:
        raise SensorFileError(f"unknown sensor file format {fmt!r} (use .yaml, .yml or .csv)")
    specs: list[SensorSpec] = []
    problems: list[str] = []
    seen: set[str] = set()
    dev_euis: dict[str, str] = {}
    for number, spec in validated_entries(rows, SensorSpec, "sensor", problems):
        if spec.sensor_id in seen:
            problems.append(f"entry {number}: sensor_id {spec.sensor_id!r} appears more than once")
            continue
        if spec.dev_eui is not None and spec.dev_eui in dev_euis:
            problems.append(f"entry {number}: dev_eui {spec.dev_eui} is also {dev_euis[spec.dev_eui]!r}'s")
            continue
        seen.add(spec.sensor_id)
        if spec.dev_eui is not None:
            dev_euis[spec.dev_eui] = spec.sensor_id
        specs.append(spec)
    if problems:
        raise SensorFileError("invalid sensors, nothing imported:\n  " + "\n  ".join(problems))
    return specs


def read_sensor_file(path: Path) -> list[SensorSpec]:
    """Sensors from a `.yaml`, `.yml` or `.csv` file."""
    suffix = path.suffix.lower()
    fmt = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}.get(suffix)
    if fmt is None:
        raise SensorFileError(f"{path}: unknown file type {suffix!r} (use .yaml, .yml or .csv)")
    return parse_sensors(read_text(path, SensorFileError), fmt=fmt)
