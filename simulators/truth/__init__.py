"""Ground truth: what the platform should compute for what the simulator sent.

Computed from the ledger's stored readings by this package's own plain code (never by importing `processing`), so a
disagreement with the platform points at one of two independent implementations of CONTRACT.md.

`GroundTruth.write(directory)` leaves: `summary.json` (counts sent, faults injected by type, expected rejections by
reason, duplicates), `faults.csv` (every injected fault), `agg_1m.csv`, `agg_1h.csv`, `agg_1d.csv`, `ispu.csv`,
`aqi.csv`, `traffic.csv` and `lorawan.csv` (per LoRaWAN sensor: uplinks, frame-counter gaps, frames missed, codec
members ignored). Times are ISO 8601 UTC with `Z`; floats are written so they read back exactly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from livinglab.domain import Kind, Window
from simulators.ledger import FaultRecord, Ledger
from simulators.scenario import Scenario
from simulators.truth.aggregates import Aggregate, window_aggregates
from simulators.truth.air import AqiValue, IspuValue, aqi_at, ispu_at, labels, station_hours
from simulators.truth.traffic import TrafficHour, traffic_hours

__all__ = ["Aggregate", "AqiValue", "GroundTruth", "IspuValue", "TrafficHour", "compute_ground_truth"]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Expected platform results for one simulated run."""

    summary: dict[str, Any]
    aggregates: dict[Window, list[Aggregate]]
    ispu: list[IspuValue]
    aqi: list[AqiValue]
    traffic: list[TrafficHour]
    faults: list[FaultRecord]
    #: sensor_id -> [uplinks, fcnt gaps, frames missed, codec members ignored] of LoRaWAN sensors.
    lorawan: dict[str, list[int]] = field(default_factory=dict)

    @property
    def expected_rejections(self) -> dict[str, int]:
        return dict(self.summary["expected_rejections"])

    def write(self, directory: Path) -> None:
        """Write the ground truth files into `directory` (created if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n", "utf-8")
        _write_csv(
            directory / "faults.csv",
            ("type", "sensor_id", "ts", "reason", "detail"),
            ((f.type, f.sensor_id or "", _iso(f.ts_s), f.reason or "", f.detail) for f in self.faults),
        )
        for window, rows in self.aggregates.items():
            _write_csv(
                directory / f"agg_{window.value}.csv",
                ("sensor_id", "quantity", "window_start", "count", "mean", "min", "max", "p50", "p95", "completeness"),
                ((a.sensor_id, a.quantity, _iso(a.window_start_s), a.count, *map(repr, _stats(a))) for a in rows),
            )
        _write_csv(
            directory / "ispu.csv",
            ("sensor_id", "window_end", "ispu", "category", "critical_parameter", "sub_indices", "hours_valid"),
            (
                (v.sensor_id, _iso(v.window_end_s), _opt(v.ispu), v.category or "", v.critical_parameter or "",
                 json.dumps(v.sub_indices), json.dumps(v.hours_valid))
                for v in self.ispu
            ),
        )  # fmt: skip
        _write_csv(
            directory / "aqi.csv",
            ("sensor_id", "hour", "aqi", "category", "dominant_pollutant", "sub_indices", "nowcast"),
            (
                (v.sensor_id, _iso(v.hour_s), _opt(v.aqi), v.category or "", v.dominant_pollutant or "",
                 json.dumps(v.sub_indices), json.dumps(v.nowcast))
                for v in self.aqi
            ),
        )  # fmt: skip
        _write_csv(
            directory / "traffic.csv",
            ("sensor_id", "hour", "flow_veh_h", "flow_pcu_h", "capacity_pcu_h", "degree_of_saturation", "los",
             "los_target", "mean_speed_kmh"),
            (
                (t.sensor_id, _iso(t.hour_s), repr(t.flow_veh_h), repr(t.flow_pcu_h), repr(t.capacity_pcu_h),
                 repr(t.degree_of_saturation), t.los, t.los_target, _opt(t.mean_speed_kmh))
                for t in self.traffic
            ),
        )  # fmt: skip
        _write_csv(
            directory / "lorawan.csv",
            ("sensor_id", "uplinks", "fcnt_gaps", "frames_missed", "ignored_members"),
            ((sensor_id, *counts) for sensor_id, counts in sorted(self.lorawan.items())),
        )


def compute_ground_truth(scenario: Scenario, ledger: Ledger, *, extra: dict[str, Any] | None = None) -> GroundTruth:
    """Everything the platform should compute from the readings the ledger says it stores."""
    series = ledger.series()
    intervals = {s.sensor_id: s.spec.interval_s for s in scenario.sensors}
    aggregates = {window: window_aggregates(series, intervals, window) for window in Window}
    ispu: list[IspuValue] = []
    aqi: list[AqiValue] = []
    traffic: list[TrafficHour] = []
    for sensor in scenario.sensors:
        if sensor.kind is Kind.AIR:
            hours = station_hours(series, sensor.sensor_id)
            interval = sensor.spec.interval_s
            ispu += [ispu_at(sensor.sensor_id, hours, interval, label) for label in labels(hours, 24)]
            aqi += [aqi_at(sensor.sensor_id, hours, interval, label) for label in labels(hours, 24)]
        else:
            traffic += traffic_hours(sensor.spec, series)
    summary = {**(extra or {}), **ledger.summary()}
    lorawan = {sensor_id: list(counts) for sensor_id, counts in ledger.lorawan.items()}
    return GroundTruth(summary, aggregates, ispu, aqi, traffic, list(ledger.log), lorawan)


def _stats(a: Aggregate) -> Sequence[float]:
    return (a.mean, a.min, a.max, a.p50, a.p95, a.completeness)


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _opt(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
