"""Figure (e) of the ingest benchmark: LoRaWAN uplinks as ChirpStack v4 publishes them, beside figure (a).

Each message is a ChirpStack `up` event of about a kilobyte (the simulator's uplinks: device info, gateway
metadata, the frame counter) whose codec output holds one or two readings (PM2.5, every other one also PM10), on
the default ChirpStack topic of its device. They are published and measured like the single-reading messages of
(a), through the same `mosquitto_pub -l` processes into the same ingester: messages per second from the start of
publishing until every reading is committed and acknowledged, the ingester's CPU time per message (user + system,
from /proc, counted from the first message on) and its peak memory. Target: at least 0.8 of (a)'s message rate,
with peak memory no higher than (a)'s.

Each round runs, back to back and three times over, (a) again (the same single-reading messages), (e), and (a'):
(a)'s readings padded to the uplinks' size (a SenML record with a long base name, which the decoder's plain path
takes), which shows what a kilobyte per message costs whatever its format (the broker's transfer, the ingester's
buffers), so that (e) beside (a') is what the LoRaWAN path itself costs. Back to back, because on a shared machine
the load moves within a round: the CPU time per message moves much less than the rate does. Beside the ratio of the
median rates, the median of each (e) run's rate over the (a) run just before it ("paired"). A second table shows
where each message's CPU time goes: the ingester's stages (`livinglab_ingest_thread_cpu_seconds_total`), the rest
of the ingester, the broker and the `mosquitto_pub` processes.

These runs hold at most 15,000 messages each (`--uplinks`), fewer than the ingester's inbox takes (four times the
receive maximum): Mosquitto before 2.0.13 sends past the in-flight window once messages have queued, and a run that
overflows the inbox reconnects and takes every message it had in flight again (docs/devices.md), which makes the
figures of whichever run it hits, (a) included, a measure of those redeliveries rather than of the messages.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from benchmarks.ingest import _load
from benchmarks.ingest._platform import Bench, cpu_s, metrics_text, peak_rss_mib, stored
from livinglab.sensors import SensorSpec
from livinglab.storage.registry import upsert_sensors
from simulators.lorawan import codec_output, dev_eui_of, uplink_payload, uplink_topic

#: The padding that brings a single-reading SenML message to the size of an uplink.
_PADDING = "x" * 900


class Run(NamedTuple):
    """One ingester run: messages/s, readings/s, the ingester's CPU time per message (us), peak resident MiB, and
    the CPU time per message (us) of each of its stages and of the processes around it (`WHERE`)."""

    rate: float
    readings_rate: float
    cpu_ms: float
    peak_mib: float
    where: dict[str, float]


#: Where a message's CPU time goes: the ingester's stages (`livinglab_ingest_thread_cpu_seconds_total`), the rest of
#: the ingester, then the broker and the `mosquitto_pub` processes.
WHERE = ("network", "build", "write", "ingester, other", "broker", "publishers")


class UplinkRound(NamedTuple):
    """One round of (e): the uplinks, and beside them (a) and (a') of the same moment."""

    uplinks: Run
    single: Run
    padded: Run


#: Messages per run of (e) and the runs beside it, below the ingester's inbox limit (see the module docstring).
DEFAULT_MESSAGES = 15_000
#: Back-to-back runs of (a), (e) and (a') per round.
REPEATS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    help_text = f"(e) messages per run of (e) and the runs beside it (default {DEFAULT_MESSAGES:,}; 0: skip (e))"
    parser.add_argument("--uplinks", type=int, default=DEFAULT_MESSAGES, help=help_text)


def uplink_line(sensor: str, dev_eui: str, i: int, ts: float) -> tuple[bytes, int]:
    """Uplink i of a device at `ts` (frame counter i; PM2.5, and PM10 every other one), and its readings."""
    records = [("pm25", ts, float(i % 500) + 0.5, None)]
    if i % 2:
        records.append(("pm10", ts, float(i % 700) + 0.5, None))
    output = codec_output(records, ts, extra=False)
    payload = uplink_payload("chirpstack", sensor_id=sensor, dev_eui=dev_eui, output=output, fcnt=i, publish_at=ts)
    return payload, len(records)


def padded_line(sensor: str, i: int, ts: float) -> bytes:
    """(a')'s message i: the single reading of (a) as a SenML record padded to an uplink's size."""
    return f'[{{"bn":"urn:dev:livinglab:{sensor}:{_PADDING}:","bt":{ts:.2f},"n":"pm25","v":{i % 500}.5}}]'.encode()


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
            line, n = uplink_line(sensor, dev_eui, i, round(base_ts + i * _load.STEP_S, 2))
            lines.append(line)
            readings += n
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
        lines = [padded_line(sensor, i, base_ts + i * _load.STEP_S) for i in range(per_sensor)]
        path = directory / f"{sensor}.padded"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(_load.LoadFile(sensor, path, per_sensor, per_sensor))
    return files


def _spec(sensor_id: str, dev_eui: str | None = None) -> SensorSpec:
    return SensorSpec(
        sensor_id=sensor_id, city="bench", district="bench", kind="air", lat=0.0, lon=0.0, dev_eui=dev_eui
    )


def run_uplinks(bench: Bench, messages: int, publishers: int) -> list[UplinkRound]:
    """(a), (e) and (a') back to back, `REPEATS` times, on the benchmark's platform (`benchmarks.ingest._platform`)."""
    per_sensor = messages // publishers
    single_ids = [f"single-{i}" for i in range(publishers)]
    singles = _load.write_single_files(bench.work, single_ids, per_sensor, bench.base_ts)
    lora_ids = [f"lora-{i}" for i in range(publishers)]
    uplinks = write_uplink_files(bench.work, lora_ids, per_sensor, bench.base_ts)
    padded_ids = [f"padded-{i}" for i in range(publishers)]
    padded = write_padded_files(bench.work, padded_ids, per_sensor, bench.base_ts)
    sizes = [len(line) for f in uplinks for line in f.path.read_bytes().splitlines()[:10]]
    padded_size = len(padded[0].path.read_bytes().splitlines()[0])
    print(f"(e) uplinks of {min(sizes):,}-{max(sizes):,} bytes; (a') messages of {padded_size:,} bytes", flush=True)
    return [
        UplinkRound(
            single=_measure(bench, singles, [_spec(s) for s in single_ids]),
            uplinks=_measure(bench, uplinks, [_spec(s, dev_eui_of(s)) for s in lora_ids]),
            padded=_measure(bench, padded, [_spec(s) for s in padded_ids]),
        )
        for _ in range(REPEATS)
    ]


def _measure(bench: Bench, files: Sequence[_load.LoadFile], specs: Sequence[SensorSpec]) -> Run:
    """One ingester run on `files`, published as (a) publishes them."""
    total, readings = sum(f.messages for f in files), sum(f.readings for f in files)
    bench.reset([])
    with psycopg.connect(bench.database_url, autocommit=True) as conn:
        upsert_sensors(conn, specs)
    with bench.ingester() as (process, port):
        cpu, stages, broker, publishers = cpu_s(process.pid), _stage_cpu(port), cpu_s(bench.broker.pid), _children()
        started = _load.publish_files(bench.broker.port, files)
        publishers = _children() - publishers
        done = stored(bench, port, readings, "readings")
        cpu = cpu_s(process.pid) - cpu
        broker = cpu_s(bench.broker.pid) - broker
        stages = {k: v - stages.get(k, 0.0) for k, v in _stage_cpu(port).items()}
        peak = peak_rss_mib(process.pid)
    assert bench.count() == readings, "not every reading was stored"
    elapsed = done - started
    where = {stage: stages.get(stage, 0.0) for stage in WHERE[:3]}
    where |= {"ingester, other": cpu - sum(where.values()), "broker": broker, "publishers": publishers}
    return Run(
        total / elapsed, readings / elapsed, cpu / total * 1e6, peak, {k: v / total * 1e6 for k, v in where.items()}
    )


_STAGE_SAMPLE = re.compile(r'^livinglab_ingest_thread_cpu_seconds_total\{stage="(\w+)"\} (\S+)$', re.MULTILINE)


def _stage_cpu(port: int) -> dict[str, float]:
    """The ingester's CPU seconds by stage, from its metrics."""
    return {m.group(1): float(m.group(2)) for m in _STAGE_SAMPLE.finditer(metrics_text(port))}


def _children() -> float:
    """CPU seconds of this process's children that have ended (the `mosquitto_pub` processes of a run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rows(rounds: Sequence[UplinkRound], singles: Sequence[tuple[float, float, float]]) -> list[str]:
    """The table rows of (e): beside (a) and (a') of the same rounds, and (a) of the main run."""
    if not rounds:
        return []

    def med(pick: Any) -> float:
        return float(statistics.median(pick(r) for r in rounds))

    e_rate, e_readings, e_cpu = (
        med(lambda r: r.uplinks.rate),
        med(lambda r: r.uplinks.readings_rate),
        med(lambda r: r.uplinks.cpu_ms),
    )
    a_rate, a_cpu = med(lambda r: r.single.rate), med(lambda r: r.single.cpu_ms)
    p_rate, p_cpu = med(lambda r: r.padded.rate), med(lambda r: r.padded.cpu_ms)
    main_rate = statistics.median(s[0] for s in singles)
    # The median of each (e) run's rate over the (a) run just before it: steadier when the machine's load drifts.
    paired = med(lambda r: r.uplinks.rate / r.single.rate)
    e_peak = max(r.uplinks.peak_mib for r in rounds)
    a_peak, p_peak = max(r.single.peak_mib for r in rounds), max(r.padded.peak_mib for r in rounds)
    return [
        f"| (e) ChirpStack uplinks (about 1 KB, 1-2 readings), QoS 1, end to end | {e_rate:,.0f} msg/s"
        f" ({e_readings:,.0f} readings/s) | (a) beside it {a_rate:,.0f} msg/s ((a) above: {main_rate:,.0f})"
        f" | {e_rate / a_rate:.2f} (paired: {paired:.2f}) | >= 0.8 |",
        f"| (e) ingester CPU time per message | {e_cpu:,.0f} us | (a) beside it {a_cpu:,.0f} us"
        f" | {a_cpu / e_cpu:.2f} (rate it allows) | >= 0.8 |",
        f"| (e) beside (a'), single readings padded to the same size | {e_rate:,.0f} msg/s, {e_cpu:,.0f} us CPU"
        f" | {p_rate:,.0f} msg/s, {p_cpu:,.0f} us CPU | {e_rate / p_rate:.2f}, {p_cpu / e_cpu:.2f} | |",
        f"| ingester peak memory (VmHWM), (e) beside (a) and (a') | {e_peak:.0f} MiB | (a) {a_peak:.0f} MiB,"
        f" (a') {p_peak:.0f} MiB | {e_peak / a_peak:.2f}, {e_peak / p_peak:.2f} | unchanged |",
        "",
        "Where a message's CPU time goes (us per message, medians of the same rounds): the ingester's threads by",
        "stage, the rest of the ingester, the broker and the publishers",
        "",
        "| part | (a) single readings | (a') padded to 1 KB | (e) ChirpStack uplinks | (e) - (a) | (e) - (a') |",
        "|---|---:|---:|---:|---:|---:|",
        *(_where_row(rounds, part) for part in (*WHERE, None)),
    ]


def _where_row(rounds: Sequence[UplinkRound], part: str | None) -> str:
    """One row of the CPU time table: `part` of `WHERE`, or None for the sum of them all."""

    def med(run: str) -> float:
        runs = (getattr(r, run).where for r in rounds)
        return float(statistics.median(w[part] if part else sum(w.values()) for w in runs))

    single, padded, uplinks = med("single"), med("padded"), med("uplinks")
    return (
        f"| {part or 'all of it'} | {single:.1f} | {padded:.1f} | {uplinks:.1f} | {uplinks - single:+.1f}"
        f" | {uplinks - padded:+.1f} |"
    )
