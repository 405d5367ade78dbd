"""Load for the ingest benchmark: payload files fed to several `mosquitto_pub -l` processes, and a paced feeder.

`mosquitto_pub -l` publishes one message per input line; several processes, one per sensor topic, keep the broker
busier than one Python publisher could (a paho publisher tops out near 8k QoS 1 messages/s here, several
`mosquitto_pub` processes near 35k). Files are written before the clock starts, so generating them costs nothing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from livinglab.embedded import LOOPBACK

PREFIX = "livinglab/v1"
#: Readings of one sensor are 10 ms apart, so a run stays far inside the 7-day acceptance window.
STEP_S = 0.01


def topic(sensor_id: str) -> str:
    return f"{PREFIX}/bench/air/{sensor_id}"


def single_line(base_ts: float, i: int) -> bytes:
    """One simple-JSON reading: the 'single-reading message' of figure (a)."""
    return b'{"ts":%.2f,"pm25":%d.5}' % (base_ts + i * STEP_S, i % 500)


def pack_line(sensor_id: str, base_ts: float, j: int, size: int = 100) -> bytes:
    """One SenML pack of `size` readings, the j-th of its sensor (figures (b) and (c))."""
    records: list[dict[str, object]] = [{"bn": f"urn:dev:livinglab:{sensor_id}:", "bt": base_ts + j * size * STEP_S}]
    records += [{"n": "pm25", "v": (j + k) % 500 + 0.25, "t": round(k * STEP_S, 2)} for k in range(size)]
    return orjson.dumps(records)


@dataclass(frozen=True)
class LoadFile:
    sensor_id: str
    path: Path
    messages: int
    readings: int
    #: Where its lines are published (default: the sensor's device topic).
    topic: str | None = None


def write_single_files(directory: Path, sensors: Sequence[str], per_sensor: int, base_ts: float) -> list[LoadFile]:
    files = []
    for sensor in sensors:
        path = directory / f"{sensor}.lines"
        path.write_bytes(b"\n".join(single_line(base_ts, i) for i in range(per_sensor)) + b"\n")
        files.append(LoadFile(sensor, path, per_sensor, per_sensor))
    return files


def write_pack_files(
    directory: Path, sensors: Sequence[str], packs_per_sensor: int, base_ts: float, size: int = 100
) -> list[LoadFile]:
    files = []
    for sensor in sensors:
        path = directory / f"{sensor}.packs"
        path.write_bytes(b"\n".join(pack_line(sensor, base_ts, j, size) for j in range(packs_per_sensor)) + b"\n")
        files.append(LoadFile(sensor, path, packs_per_sensor, packs_per_sensor * size))
    return files


def _mosquitto_pub(port: int, sensor_id: str, stdin: int | IO[bytes], to: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["mosquitto_pub", "-h", LOOPBACK, "-p", str(port), "-q", "1", "-l", "-M", "1000", "-t", to or topic(sensor_id),
         "-i", f"bench-pub-{sensor_id}-{time.monotonic_ns()}"],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def publish_files(port: int, files: Sequence[LoadFile]) -> float:
    """Publish every file, one process each, all at once; returns the wall-clock time they started."""
    handles = [f.path.open("rb") for f in files]
    started = time.time()
    processes = [_mosquitto_pub(port, f.sensor_id, h, f.topic) for f, h in zip(files, handles, strict=True)]
    for process, handle in zip(processes, handles, strict=True):
        if process.wait(timeout=600) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {process.returncode}")
        handle.close()
    return started


def publish_paced(port: int, sensors: Sequence[str], rate_per_s: float, duration_s: float) -> int:
    """Publish single readings whose `ts` is the time they are handed to `mosquitto_pub`, at a steady total rate.

    The readings are the latency probes: commit time minus `ts` is publish-to-commit latency. Returns how many.
    """
    processes = [_mosquitto_pub(port, sensor, subprocess.PIPE) for sensor in sensors]
    per_tick = max(1, round(rate_per_s * 0.01 / len(sensors)))  # a tick is 10 ms
    sent = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < duration_s:
        now_us = int(time.time() * 1e6)  # whole microseconds: every probe of a sensor gets its own time
        for process in processes:
            assert process.stdin is not None
            lines = (
                b'{"ts":%d.%06d,"pm25":%d.5}\n' % (*divmod(now_us + n, 1_000_000), (sent + n) % 500)
                for n in range(per_tick)
            )
            process.stdin.write(b"".join(lines))
            process.stdin.flush()
        sent += per_tick * len(processes)
        tick += 1
        delay = start + tick * 0.01 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)
    return sent
