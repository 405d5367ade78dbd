"""Load mode: the scenario's readings as fast as possible, from several publisher processes.

Each process takes every P-th sensor and publishes its readings over a past period (within the platform's maximum
lateness), 25 sensors at a time taking turns, as single readings (`pack=1`) or SenML packs (simple JSON arrays
with `payload="json"`) of `pack` readings, at QoS 0 or 1, through the lean publisher of `simulators.wire`.
Processes share nothing but a counter array the parent reads for the progress bar, and report their totals at the
end; several processes and a publisher that builds packets in bulk keep the generator from being what a load run
measures. Readings are deterministic for the seed; two runs into one database send the
same keys (the second run is all duplicates), so benchmarks use a fresh database or another `start_s`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from livinglab.domain import QUANTITIES
from livinglab.settings import MqttUrl
from simulators.devices import DAY_S, reported_unit, simulate_day
from simulators.progress import Progress
from simulators.scenario import Scenario, SimSensor, load_scenario
from simulators.wire import WireError, WirePublisher, topic_field

log = logging.getLogger(__name__)

_GROUP = 25


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """A load run. It ends after `messages` in total or after `duration_s`, whichever comes first."""

    messages: int = 200_000
    duration_s: float | None = None
    processes: int = 2
    pack: int = 1
    qos: int = 1
    payload: Literal["senml", "json"] = "senml"
    seed: int = 1
    prefix: str = "livinglab/v1"
    client_id: str = "livinglab-load"
    window: int = 1000
    #: First reading time (default: 6 days ago, inside the platform's 7-day lateness).
    start_s: float | None = None
    progress: bool = True


@dataclass(slots=True)
class LoadResult:
    """What a load run sent."""

    messages: int = 0
    readings: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    per_process: list[tuple[int, float]] = field(default_factory=list)
    #: Wall-clock time the processes started publishing together (after loading and planning).
    started_at: float = 0.0
    #: Spawning the processes, loading the scenario, connecting and planning the first messages.
    startup_s: float = 0.0
    #: Publisher processes that stopped on a broken or refused connection.
    errors: list[str] = field(default_factory=list)

    @property
    def messages_per_s(self) -> float:
        return self.messages / max(self.elapsed_s, 1e-9)

    @property
    def readings_per_s(self) -> float:
        return self.readings / max(self.elapsed_s, 1e-9)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.by_kind.items()))
        lines = [
            f"load: {self.messages:,} messages ({self.readings:,} readings, {self.bytes:,} bytes) in "
            f"{self.elapsed_s:,.1f} s: {self.messages_per_s:,.0f} msg/s, {self.readings_per_s:,.0f} readings/s"
            f" (after {self.startup_s:,.1f} s of start-up)",
            f"  by kind: {kinds or 'none'}; processes: "
            + ", ".join(f"{n:,} msgs in {t:,.1f} s" for n, t in self.per_process),
        ]
        lines += [f"  a publisher stopped early: {error}" for error in self.errors]
        return "\n".join(lines)


def _value_texts(values: list[float], quantity: str) -> list[str]:
    if QUANTITIES[quantity].is_count:
        return [str(int(v)) for v in values]
    return [repr(v) for v in values]


@dataclass(frozen=True, slots=True)
class _Stream:
    """One sensor-day ready to cut into messages: readings as (ts, JSON member text) in time order."""

    topic: bytes
    kind: str
    #: The start of a SenML pack up to its base time: `[{"bn":"urn:dev:livinglab:<id>:","bt":`.
    head: str
    readings: list[tuple[int, str, str]]  # (ts, SenML record members, simple JSON member)


def _stream(sensor: SimSensor, scenario: Scenario, options: LoadOptions, day: int, start_s: float) -> _Stream:
    spec = sensor.spec
    block = simulate_day(sensor, scenario, options.seed, day)
    keep = (block.ts_s >= start_s) & (block.ts_s < time.time() - 120)
    stamps = block.ts_s[keep].tolist()
    columns = []
    for name in sensor.model.reported:
        unit = reported_unit(sensor, name)
        unit_part = "" if unit == QUANTITIES[name].unit else f',"u":"{unit}"'
        texts = _value_texts(block.values[name][keep].tolist(), name)
        columns.append([(f'"n":"{name}"{unit_part},"v":{t}', f'"{name}":{t}') for t in texts])
    readings = [(ts, *column[i]) for i, ts in enumerate(stamps) for column in columns]
    topic = topic_field(f"{options.prefix}/{spec.city}/{spec.kind.value}/{spec.sensor_id}")
    return _Stream(topic, spec.kind.value, f'[{{"bn":"urn:dev:livinglab:{spec.sensor_id}:","bt":', readings)


def _payload(stream: _Stream, chunk: list[tuple[int, str, str]], payload: str) -> bytes:
    if payload == "json":
        items = [f'{{"ts":{ts},{member}}}' for ts, _, member in chunk]
        return (items[0] if len(items) == 1 else "[" + ",".join(items) + "]").encode()
    base, record, _ = chunk[0]
    if len(chunk) == 1:
        return f"{stream.head}{base},{record}}}]".encode()
    rest = [f',{{{record},"t":{ts - base}}}' if ts != base else f",{{{record}}}" for ts, record, _ in chunk[1:]]
    return f"{stream.head}{base},{record}}}{''.join(rest)}]".encode()


def payloads(
    sensors: Sequence[SimSensor], scenario: Scenario, options: LoadOptions, start_s: float
) -> Iterator[tuple[bytes, str, bytes, int]]:
    """(topic field, kind, payload, readings) of the sensors' readings from `start_s`, `pack` readings a message.

    Sensors are taken `_GROUP` at a time and day by day; within a group the sensors take turns, one message each, so
    consecutive messages come from different sensors as they would from a city.
    """
    day = int(start_s // DAY_S)
    pack = options.pack
    while day * DAY_S < time.time() - 120:
        for first in range(0, len(sensors), _GROUP):
            streams = [_stream(s, scenario, options, day, start_s) for s in sensors[first : first + _GROUP]]
            longest = max((len(s.readings) for s in streams), default=0)
            for at in range(0, longest, pack):
                for stream in streams:
                    chunk = stream.readings[at : at + pack]
                    if chunk:
                        yield stream.topic, stream.kind, _payload(stream, chunk, options.payload), len(chunk)
        day += 1


def _worker(
    index: int,
    scenario_source: str,
    url: MqttUrl,
    options: LoadOptions,
    start_s: float,
    quota: int,
    counters: Any,
    results: Any,
    stop: Any,
    ready: Any,
) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers through `stop`, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sent = readings = size = 0
    error = ""
    by_kind: dict[str, int] = {}
    started = time.monotonic()
    publisher: WirePublisher | None = None
    try:
        scenario = load_scenario(scenario_source)
        publisher = WirePublisher(url, f"{options.client_id}-{index}", qos=options.qos, window=options.window)
        publisher.connect()
        # Plan the first messages, then start together: start-up is not publishing time.
        messages = payloads(scenario.sensors[index :: options.processes], scenario, options, start_s)
        first = next(messages, None)
        ready.wait(timeout=300)
        started = time.monotonic()
        deadline = started + options.duration_s if options.duration_s else None
        for topic, kind, payload, n in itertools.chain([first] if first else [], messages):
            if sent >= quota or stop.is_set() or (deadline and time.monotonic() >= deadline):
                break
            publisher.publish(topic, payload)
            sent += 1
            readings += n
            size += len(payload)
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if sent % 256 == 0:
                counters[index] = sent
        publisher.wait_acknowledged(timeout_s=120)
    except (OSError, WireError, threading.BrokenBarrierError) as exc:
        error = f"publisher {index}: {exc or type(exc).__name__}"
        ready.abort()
    finally:
        counters[index] = sent
        if publisher is not None:
            publisher.close()
        results.put((index, sent, readings, size, error, time.monotonic() - started, by_kind))


def run_load(scenario_source: str, url: MqttUrl, options: LoadOptions, stop: Any = None) -> LoadResult:
    """Run a load test from `options.processes` publisher processes and return what they sent."""
    if options.pack < 1:
        raise ValueError("pack must be at least 1")
    ctx = mp.get_context("spawn")
    start_s = options.start_s if options.start_s is not None else time.time() - 6 * DAY_S
    start_s = float(np.floor(start_s / 60) * 60)
    counters = ctx.Array("q", options.processes, lock=False)
    results = ctx.Queue()
    stop_event = ctx.Event()
    ready = ctx.Barrier(options.processes + 1)
    quotas = [options.messages // options.processes + (i < options.messages % options.processes)
              for i in range(options.processes)]  # fmt: skip
    workers = [
        ctx.Process(
            target=_worker,
            args=(i, scenario_source, url, options, start_s, quotas[i], counters, results, stop_event, ready),
            name=f"livinglab-load-{i}",
        )
        for i in range(options.processes)
    ]
    spawned = time.monotonic()
    for worker in workers:
        worker.start()
    result = LoadResult()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed to start; its result says why
        ready.wait(timeout=300)
    started = time.monotonic()
    result.started_at = time.time()
    result.startup_s = started - spawned
    progress = Progress(float(options.messages), f"load {scenario_source}", enabled=options.progress)
    pending = len(workers)
    try:
        while pending:
            if stop is not None and stop.is_set():
                stop_event.set()
            try:
                _, sent, readings, size, error, elapsed, by_kind = results.get(timeout=0.5)
            except queue.Empty:
                progress.update(sum(counters), sum(counters))
                if not any(w.is_alive() for w in workers) and results.empty():
                    break
                continue
            pending -= 1
            result.messages += sent
            result.readings += readings
            result.bytes += size
            if error:
                result.errors.append(error)
            result.per_process.append((sent, elapsed))
            for kind, n in by_kind.items():
                result.by_kind[kind] = result.by_kind.get(kind, 0) + n
    finally:
        stop_event.set()
        for worker in workers:
            worker.join(timeout=30)
        result.elapsed_s = time.monotonic() - started
        progress.close(result.messages, result.messages)
    return result
