"""The decoder's plain paths, each turned off in turn: CPU time of the build step per message, in process.

The build step is what the ingester's building thread does with a batch (topic, registry, decoding, range and time
checks: `ingest.batch.BatchBuilder.build`); its CPU time per message is measured on batches of 1,000 messages of
each load shape, with every plain path on, with the path that shape takes turned off, and with the full walk
alone. Variants take turns round by round and the fastest round of each counts (thread CPU time, so a busy
machine moves it less than wall-clock time). A path earns its place when turning it off costs more than noise.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import orjson

from ingest._plain import PLAIN_PATHS
from ingest.batch import BatchBuilder, Message
from ingest.rows import Limits
from livinglab.domain import Kind
from livinglab.storage.registry import RegistryEntry
from simulators.messages import senml_payload

_SENSORS = 10
_AIR = ("pm25", "pm10", "no2", "o3", "co", "so2", "temp", "rh")


@dataclass(frozen=True)
class PathCost:
    """Build-step CPU time per message (microseconds) of one load shape with its plain path on and off."""

    shape: str
    path: str
    on_us: float
    off_us: float
    walk_us: float


class _Registry:
    def __init__(self) -> None:
        self.entries = {f"s{i}": RegistryEntry(i + 1, "bench", Kind.AIR, 60) for i in range(_SENSORS)}

    def get(self, sensor_id: str) -> RegistryEntry | None:
        return self.entries.get(sensor_id)

    def resolve_missing(self, sensor_ids: Collection[str]) -> None:
        return None


def _shapes(now: float, messages: int) -> list[tuple[str, str, list[bytes]]]:
    base = float(int(now) - 3600)
    singles = [b'{"ts":%.2f,"pm25":%d.5}' % (base + i * 0.01, i % 500) for i in range(messages)]
    packs = [
        orjson.dumps(
            [{"bn": f"urn:dev:livinglab:s{j % _SENSORS}:", "bt": base + j}]
            + [{"n": "pm25", "v": (j + k) % 500 + 0.25, "t": round(k * 0.01, 2)} for k in range(100)]
        )
        for j in range(messages // 10)
    ]
    city = [senml_payload(f"s{i % _SENSORS}", [("pm25", base + i, 12.5, None)]) for i in range(messages)]
    five = [senml_payload(f"s{i % _SENSORS}", [(q, base + i, 12.5, None) for q in _AIR[:5]]) for i in range(messages)]
    return [
        ("single-reading messages (load (a))", "object", singles),
        ("SenML packs of 100 readings (load (b), 1/10 as many)", "senml", packs),
        ("SenML packs of 1 reading, as the simulator sends them (load (d))", "senml", city),
        ("SenML packs of 5 readings", "senml", five),
    ]


def _build_us(messages: list[Message], paths: Collection[str]) -> float:
    """CPU microseconds per message of one build of `messages` with these plain paths."""
    builder = BatchBuilder(prefix="livinglab/v1", sensors=_Registry(), limits=Limits(), plain_paths=frozenset(paths))
    return build_us(builder, messages)


def build_us(builder: BatchBuilder, messages: Sequence[Message]) -> float:
    """CPU microseconds per message of one build of `messages` by `builder`; every message must be accepted."""
    started = time.thread_time()
    built = builder.build(messages)
    elapsed = time.thread_time() - started
    if built.rejections:
        raise RuntimeError(f"the benchmark load was rejected: {next(iter(built.rejections.values()))}")
    return elapsed / len(messages) * 1e6


def measure_paths(rounds: int = 15, messages: int = 1000) -> list[PathCost]:
    """Build-step cost per message of each load shape: every path on, its path off, the walk alone."""
    now = time.time()
    results = []
    for shape, path, payloads in _shapes(now, messages):
        batch = [Message(f"livinglab/v1/bench/air/s{i % _SENSORS}", p, i + 1, 1, now) for i, p in enumerate(payloads)]
        variants: dict[str, Collection[str]] = {"on": PLAIN_PATHS, "off": PLAIN_PATHS - {path}, "walk": ()}
        best = dict.fromkeys(variants, float("inf"))
        for round_ in range(rounds):
            order: Iterable[str] = variants if round_ % 2 else reversed(list(variants))
            for name in order:
                best[name] = min(best[name], _build_us(batch, variants[name]))
        results.append(PathCost(shape, path, best["on"], best["off"], best["walk"]))
    return results


def print_paths_off(paths: list[PathCost]) -> None:
    """The decoder ablation table (see the module docstring)."""
    print()
    print("decoder plain paths: build-step CPU per message (best of the rounds, 1,000-message batches)")
    print()
    print("| load shape | plain path | all paths on | that path off | walk alone |")
    print("|---|---|---:|---:|---:|")
    for cost in paths:
        print(
            f"| {cost.shape} | `{cost.path}` | {cost.on_us:.2f} us | {cost.off_us:.2f} us"
            f" ({cost.off_us / cost.on_us:.2f}x) | {cost.walk_us:.2f} us |"
        )


def main() -> None:
    """Print the table on its own: `python -m benchmarks.ingest._decoding`."""
    print_paths_off(measure_paths())


if __name__ == "__main__":
    main()
