"""Figure (e) of the ingest benchmark: LoRaWAN uplinks as ChirpStack v4 publishes them, beside figure (a).

Each message is a ChirpStack `up` event of about a kilobyte (the simulator's uplinks: device info, gateway
metadata, the frame counter) whose codec output holds one or two readings (PM2.5, every other one also PM10), on
the default ChirpStack topic of its device. They are published and measured like the single-reading messages of
(a), through the same `mosquitto_pub -l` processes into the same ingester: messages per second from the start of
publishing until every reading is committed and acknowledged, and the ingester's peak memory. Target: at least 0.8
of (a)'s ingester message rate, with peak memory no higher than (a)'s.

A second baseline, (a'), sends the single readings of (a) padded to the uplinks' size (a SenML record with a long
base name, which the decoder's plain path takes): it shows what a kilobyte per message costs whatever the format,
the broker's transfer and the ingester's buffers included, so that (e) beside (a') is what the LoRaWAN path itself
costs.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.ingest import _load
from livinglab.sensors import SensorSpec
from livinglab.storage.registry import upsert_sensors
from simulators.lorawan import codec_output, dev_eui_of, uplink_payload, uplink_topic

#: (ingester msg/s, ingester readings/s, ingester peak MiB) of one run of (e), then the same of (a').
UplinkRun = tuple[float, float, float, float, float, float]
#: The padding that brings a single-reading SenML message to the size of an uplink.
_PADDING = "x" * 900


def add_arguments(parser: argparse.ArgumentParser) -> None:
    help_text = "(e) ChirpStack uplinks per run (default: --messages; 0: skip (e))"
    parser.add_argument("--uplinks", type=int, default=None, help=help_text)


def write_uplink_files(
    directory: Path, sensors: Sequence[str], per_sensor: int, base_ts: float
) -> list[_load.LoadFile]:
    """One file of uplinks per device; uplink i of a device is at `base_ts + i * STEP_S` with frame counter i."""
    files = []
    for sensor in sensors:
        dev_eui = dev_eui_of(sensor)
        lines = []
        readings = 0
        for i in range(per_sensor):
            ts = round(base_ts + i * _load.STEP_S, 2)
            records = [("pm25", ts, float(i % 500) + 0.5, None)]
            if i % 2:
                records.append(("pm10", ts, float(i % 700) + 0.5, None))
            readings += len(records)
            output = codec_output(records, ts, extra=False)
            lines.append(
                uplink_payload("chirpstack", sensor_id=sensor, dev_eui=dev_eui, output=output, fcnt=i, publish_at=ts)
            )
        path = directory / f"{sensor}.uplinks"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(_load.LoadFile(sensor, path, per_sensor, readings, uplink_topic("chirpstack", sensor, dev_eui)))
    return files


def write_padded_files(
    directory: Path, sensors: Sequence[str], per_sensor: int, base_ts: float
) -> list[_load.LoadFile]:
    """(a'): the single readings of (a) as SenML records padded to an uplink's size."""
    files = []
    for sensor in sensors:
        head = f'[{{"bn":"urn:dev:livinglab:{sensor}:{_PADDING}:","bt":'
        lines = [
            f'{head}{base_ts + i * _load.STEP_S:.2f},"n":"pm25","v":{i % 500}.5}}]'.encode() for i in range(per_sensor)
        ]
        path = directory / f"{sensor}.padded"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(_load.LoadFile(sensor, path, per_sensor, per_sensor))
    return files


def run_uplinks(bench: Any, messages: int, publishers: int) -> UplinkRun:
    """(e) and (a') on the benchmark's platform (`benchmarks.ingest.__main__.Bench`)."""
    sensors = [f"lora-{i}" for i in range(publishers)]
    files = write_uplink_files(bench.work, sensors, messages // publishers, bench.base_ts)
    sizes = [len(line) for f in files for line in f.path.read_bytes().splitlines()[:10]]
    specs = [
        SensorSpec(sensor_id=s, city="bench", district="bench", kind="air", lat=0.0, lon=0.0, dev_eui=dev_eui_of(s))
        for s in sensors
    ]
    uplinks = _measure(bench, files, specs)
    padded_sensors = [f"padded-{i}" for i in range(publishers)]
    padded = write_padded_files(bench.work, padded_sensors, messages // publishers, bench.base_ts)
    plain = [
        SensorSpec(sensor_id=s, city="bench", district="bench", kind="air", lat=0.0, lon=0.0) for s in padded_sensors
    ]
    same_size = _measure(bench, padded, plain)
    padded_size = len(padded[0].path.read_bytes().splitlines()[0])
    print(f"(e) uplinks of {min(sizes):,}-{max(sizes):,} bytes; (a') messages of {padded_size:,} bytes", flush=True)
    return (*uplinks, *same_size)


def _measure(bench: Any, files: Sequence[_load.LoadFile], specs: Sequence[SensorSpec]) -> tuple[float, float, float]:
    """(msg/s, readings/s, peak MiB) of the ingester taking `files`, published as (a) publishes."""
    from benchmarks.ingest.__main__ import _metric, _peak_rss_mib, _wait

    total, readings = sum(f.messages for f in files), sum(f.readings for f in files)
    bench.reset([])
    with psycopg.connect(bench.database_url, autocommit=True) as conn:
        upsert_sensors(conn, specs)
    with bench.ingester() as (process, port):
        started = _load.publish_files(bench.broker.port, files)
        done = _wait(lambda: _metric(port, "livinglab_ingest_readings_accepted_total") >= readings, 300, "readings")
        peak = _peak_rss_mib(process.pid)
    assert bench.count() == readings, "not every reading was stored"
    return total / (done - started), readings / (done - started), peak


def rows(runs: Sequence[UplinkRun], singles: Sequence[tuple[float, float, float]]) -> list[str]:
    """The table row of (e), beside the ingester's rate and memory in (a) of the same rounds."""
    if not runs:
        return []
    med = statistics.median
    ours, per_s, same_size = med(r[0] for r in runs), med(r[1] for r in runs), med(r[3] for r in runs)
    single = med(s[0] for s in singles)
    peak, padded_peak, single_peak = max(r[2] for r in runs), max(r[5] for r in runs), max(s[2] for s in singles)
    return [
        f"| (e) ChirpStack uplinks (about 1 KB, 1-2 readings), QoS 1, end to end | {ours:,.0f} msg/s"
        f" ({per_s:,.0f} readings/s) | the ingester on (a), single-reading messages {single:,.0f} msg/s"
        f" | {ours / single:.2f} | >= 0.8 |",
        f"| (e) beside (a'), single readings padded to the same size | {ours:,.0f} msg/s | {same_size:,.0f} msg/s"
        f" | {ours / same_size:.2f} | |",
        f"| ingester peak memory (VmHWM), (e) beside (a) and (a') | {peak:.0f} MiB | (a) {single_peak:.0f} MiB,"
        f" (a') {padded_peak:.0f} MiB | {peak / single_peak:.2f}, {peak / padded_peak:.2f} | unchanged |",
    ]
