"""What `livinglab simulate` does with its options: print the registry or the district outlines, register sensors,
run a mode, print the summary and write the ground truth."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from livinglab.errors import ConfigurationError
from livinglab.sensors import SensorSpec
from simulators.faults import FaultRates
from simulators.load import LoadOptions, run_load
from simulators.lorawan import Network, lorawan_scenario
from simulators.plan import Period
from simulators.progress import format_summary
from simulators.run import Mode, RunOptions, Simulation, default_period, write_ground_truth
from simulators.scenario import Scenario, load_scenario
from simulators.settings import SimulatorSettings

log = logging.getLogger(__name__)

RegistryFormat = Literal["yaml", "json", "csv"]


@dataclass(frozen=True, slots=True)
class SimulateRequest:
    """The options of `livinglab simulate`, parsed."""

    scenario: str = "demo"
    mode: Mode = Mode.REALTIME
    speed: float = 60.0
    days: float = 1.0
    end: datetime | None = None
    follow: bool = False
    faults: str = "default"
    seed: int | None = None
    qos: int = 1
    register: bool = False
    ground_truth: Path | None = None
    print_registry: RegistryFormat | None = None
    print_districts: bool = False
    progress: bool = True
    processes: int = 2
    pack: int = 1
    messages: int = 200_000
    duration_s: float | None = None
    payload: Literal["senml", "json"] = "senml"
    #: `direct` (CONTRACT.md section 1), or every sensor as a LoRaWAN device behind this network server.
    format: Literal["direct", "chirpstack", "tts"] = "direct"

    @property
    def network(self) -> Network | None:
        return None if self.format == "direct" else self.format


def registry_document(scenario: Scenario, fmt: RegistryFormat) -> str:
    """The scenario's sensors as a registry file: YAML (`sensors:`), a JSON array, or CSV."""
    rows = [_registry_row(spec) for spec in scenario.specs]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump({"sensors": rows}, sort_keys=False, allow_unicode=True)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SensorSpec.model_fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(spec) for spec in scenario.specs)
    return out.getvalue()


def _registry_row(spec: SensorSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def _csv_row(spec: SensorSpec) -> dict[str, Any]:
    row = spec.model_dump(mode="json")
    if row["field_map"] is not None:
        row["field_map"] = json.dumps(_registry_row(spec)["field_map"])  # a CSV cell holds the map as JSON
    return row


def districts_geojson(scenario: Scenario) -> dict[str, Any]:
    """District outlines as a GeoJSON FeatureCollection (closed [lon, lat] rings)."""
    features = []
    for district in scenario.districts:
        if not district.outline:
            continue
        ring = [[lon, lat] for lat, lon in district.outline]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "properties": {"city": scenario.district_city(district), "district": district.name},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def register_scenario(database_url: str, scenario: Scenario) -> int:
    """Create or update the scenario's sensors in the registry; returns how many."""
    from livinglab.storage import connect
    from livinglab.storage.registry import upsert_sensors

    with connect(database_url) as conn:
        written = upsert_sensors(conn, scenario.specs)
        conn.commit()
    return written


def run_simulate(
    request: SimulateRequest, settings: SimulatorSettings, on_stop: Callable[[Callable[[], None]], None]
) -> int:
    """Carry out `livinglab simulate`; `on_stop` receives the function that stops the run (for signals)."""
    scenario = lorawan_scenario(load_scenario(request.scenario), request.network)
    if request.print_registry:
        sys.stdout.write(registry_document(scenario, request.print_registry))
        return 0
    if request.print_districts:
        sys.stdout.write(json.dumps(districts_geojson(scenario), indent=2) + "\n")
        return 0
    if request.register:
        written = register_scenario(settings.require_database_url(), scenario)
        log.info("registered %d sensors of scenario %r", written, scenario.name)
    seed = settings.seed if request.seed is None else request.seed
    url = settings.require_mqtt_url()
    if request.mode is Mode.LOAD:
        if request.ground_truth is not None:
            raise ConfigurationError("the load mode writes no ground truth")
        if request.network is not None:
            raise ConfigurationError("the load mode sends device messages only; LoRaWAN formats run in the others")
        stop = threading.Event()
        on_stop(stop.set)
        load_options = LoadOptions(
            messages=request.messages,
            duration_s=request.duration_s,
            processes=request.processes,
            pack=request.pack,
            qos=request.qos,
            payload=request.payload,
            seed=seed,
            prefix=settings.topic_prefix,
            client_id=f"{settings.simulator_client_id}-load",
            progress=request.progress,
        )
        result = run_load(request.scenario, url, load_options, stop)
        print(result.summary(), file=sys.stderr)
        return 0
    period: Period | None = None
    if request.mode in (Mode.ACCELERATED, Mode.BACKFILL):
        period = default_period(request.days, request.end.timestamp() if request.end else None)
    rates = FaultRates.parse(request.faults)
    options = RunOptions(
        mode=request.mode,
        period=period,
        speed=request.speed,
        follow=request.follow,
        seed=seed,
        rates=rates,
        prefix=settings.topic_prefix,
        qos=request.qos,
        client_id=settings.simulator_client_id,
        max_payload_bytes=settings.max_payload_bytes,
        max_lateness_s=settings.max_lateness_s,
        keep_readings=request.ground_truth is not None,
        progress=request.progress,
        network=request.network,
    )
    try:
        simulation = Simulation(scenario, url, options)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    on_stop(simulation.stop)
    ledger = simulation.run()
    print(format_summary(ledger.summary(), simulation.elapsed_s), file=sys.stderr)
    if request.ground_truth is not None:
        extra = {
            "scenario": scenario.name,
            "seed": seed,
            "mode": request.mode.value,
            "faults": rates.as_dict(),
            "format": request.format,
            "completed": simulation.completed,
        }
        write_ground_truth(scenario, ledger, request.ground_truth, extra)
    return 0
