"""The domain model agrees with the contract and with the schema's seed data."""

from __future__ import annotations

import math

import psycopg
import pytest
from pydantic import ValidationError

from livinglab.domain import QUANTITIES, Kind, RejectionReason, quantities_of
from livinglab.sensors import SensorSpec


def test_vocabulary_matches_contract() -> None:
    assert {q.name for q in quantities_of(Kind.AIR)} == {
        "pm25",
        "pm10",
        "no2",
        "so2",
        "o3",
        "co",
        "hc",
        "temp",
        "rh",
    }
    assert {q.name for q in quantities_of(Kind.TRAFFIC)} == {"sm", "kr", "kb", "speed", "occupancy"}
    assert [r.value for r in RejectionReason] == [
        "retained_message", "topic_invalid", "unknown_sensor", "kind_mismatch", "payload_too_large", "invalid_utf8",
        "non_finite_value", "invalid_json", "duplicate_key", "invalid_shape", "undecoded_payload", "unknown_quantity",
        "bad_unit", "no_readings", "out_of_range", "timestamp_in_future", "timestamp_too_old", "conflicting_duplicate",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("quantity", "unit", "value", "expected_ug_m3"),
    [
        ("pm25", "mg/m3", 0.0413, 41.3),
        ("pm25", "kg/m3", 41.3e-9, 41.3),
        ("no2", "ppb", 24.45, 46.0055),  # 24.45 ppb x 46.0055 g/mol / 24.45 L/mol
        ("so2", "ppb", 100.0, 100.0 * 64.066 / 24.45),
        ("o3", "ppb", 50.0, 50.0 * 47.9982 / 24.45),
        ("co", "ppm", 1.0, 1000.0 * 28.0101 / 24.45),
    ],
)
def test_unit_conversion_at_25c(quantity: str, unit: str, value: float, expected_ug_m3: float) -> None:
    converted = QUANTITIES[quantity].units[unit].to_canonical(value)
    assert math.isclose(converted, expected_ug_m3, rel_tol=1e-12)


def test_schema_seeds_the_same_quantity_codes(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT code, name, kind, unit FROM quantities ORDER BY code").fetchall()
    assert rows == [(q.code, q.name, q.kind.value, q.unit) for q in sorted(QUANTITIES.values(), key=lambda q: q.code)]


def _traffic(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sensor_id": "tc-1", "city": "jakarta", "district": "Menteng", "kind": "traffic", "lat": -6.2,
        "lon": 106.8, "road_type": "4/2-T", "lanes": 2, "road_function": "arteri_primer",
        "city_population": 10_600_000,
    }  # fmt: skip
    base.update(overrides)
    return base


def test_sensor_defaults_follow_the_contract() -> None:
    two_lane = SensorSpec.model_validate(_traffic(road_type="2/2-TT"))
    assert (two_lane.name, two_lane.interval_s, two_lane.lane_width_m) == ("tc-1", 60, 3.5)
    assert (two_lane.carriageway_width_m, two_lane.direction_split_pct, two_lane.side_friction_factor) == (
        7.0,
        50,
        1,
    )
    divided = SensorSpec.model_validate(_traffic())
    assert divided.carriageway_width_m is None


@pytest.mark.parametrize(
    "data",
    [
        _traffic(road_function=None),
        _traffic(road_type="3/2-T"),
        _traffic(sensor_id="Bad Id"),
        _traffic(carriageway_width_m=7.0),
        {
            "sensor_id": "aq-1",
            "city": "jakarta",
            "district": "x",
            "kind": "air",
            "lat": 0,
            "lon": 0,
            "lanes": 2,
        },
        {"sensor_id": "aq-1", "city": "jakarta", "district": "x", "kind": "air", "lat": 91, "lon": 0},
    ],
)
def test_sensor_validation_rejects(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SensorSpec.model_validate(data)
