"""The building thread's share of figure (e), in process: CPU time per message of the build step on ChirpStack
uplinks beside the single readings of (a) and the padded ones of (a'), and of `parse_uplink` alone.

The build step is `ingest.batch.BatchBuilder.build` on batches of 1,000 messages of each load (the messages of
`benchmarks.ingest._lorawan`, four sensors); `parse_uplink` is timed over the same uplinks. Loads take turns round by
round and the fastest round of each counts (thread CPU time). Run: `python -m benchmarks.ingest._uplink_build`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection, Sequence

from benchmarks.ingest import _load
from benchmarks.ingest._decoding import build_us
from benchmarks.ingest._lorawan import padded_line, uplink_line
from ingest.batch import BatchBuilder, Message
from ingest.rows import Limits
from ingest.uplink_topics import DEFAULT_FILTERS, UplinkSource, UplinkTopics
from ingest.uplinks import parse_uplink
from livinglab.domain import Kind
from livinglab.storage.registry import RegistryEntry
from simulators.lorawan import dev_eui_of, uplink_topic

_SENSORS = [f"s{i}" for i in range(4)]


class _Registry:
    """Four air sensors, each with a DevEUI."""

    def __init__(self) -> None:
        self.entries = {
            s: RegistryEntry(i + 1, "bench", Kind.AIR, 60, s, dev_eui_of(s)) for i, s in enumerate(_SENSORS)
        }
        self.by_dev_eui = {e.dev_eui: e for e in self.entries.values()}

    def get(self, sensor_id: str) -> RegistryEntry | None:
        return self.entries.get(sensor_id)

    def resolve_missing(self, sensor_ids: Collection[str]) -> None:
        return None

    def get_by_dev_eui(self, dev_eui: str) -> RegistryEntry | None:
        return self.by_dev_eui.get(dev_eui)

    def resolve_missing_dev_euis(self, dev_euis: Collection[str]) -> None:
        return None


def loads(messages: int) -> dict[str, list[Message]]:
    """(a), (a') and (e) as messages received now, their readings an hour old."""
    now = time.time()
    base = float(int(now) - 3600)
    single, padded, uplinks = [], [], []
    for i in range(messages):
        sensor = _SENSORS[i % len(_SENSORS)]
        ts = round(base + i * _load.STEP_S, 2)
        single.append(Message(_load.topic(sensor), _load.single_line(base, i), i + 1, 1, now))
        padded.append(Message(_load.topic(sensor), padded_line(sensor, i, ts), i + 1, 1, now))
        dev_eui = dev_eui_of(sensor)
        uplinks.append(Message(uplink_topic("chirpstack", sensor, dev_eui), uplink_line(sensor, dev_eui, i, ts)[0],
                               i + 1, 1, now))  # fmt: skip
    return {"(a) single readings": single, "(a') padded to an uplink's size": padded, "(e) ChirpStack uplinks": uplinks}


def _parse_us(messages: Sequence[Message], limits: Limits) -> float:
    started = time.thread_time()
    for message in messages:
        parse_uplink(message.payload, UplinkSource.CHIRPSTACK, limits)
    return (time.thread_time() - started) / len(messages) * 1e6


def measure(rounds: int = 25, messages: int = 1000) -> dict[str, float]:
    """Best build-step CPU microseconds per message of each load, and of `parse_uplink` on the uplinks."""
    source = UplinkSource.CHIRPSTACK
    builder = BatchBuilder(
        prefix="livinglab/v1", sensors=_Registry(), limits=Limits(),
        uplink_topics=UplinkTopics([(source, DEFAULT_FILTERS[source])]),
    )  # fmt: skip
    batches = loads(messages)
    best = dict.fromkeys([*batches, "parse_uplink"], float("inf"))
    for round_ in range(rounds):
        names = list(batches) if round_ % 2 else list(reversed(batches))
        for name in names:
            best[name] = min(best[name], build_us(builder, batches[name]))
        best["parse_uplink"] = min(best["parse_uplink"], _parse_us(batches["(e) ChirpStack uplinks"], builder.limits))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    best = measure(args.rounds)
    single = best["(a) single readings"]
    print(f"build step, CPU per message, best of {args.rounds} rounds of 1,000-message batches")
    print()
    print("| load | build step | vs (a) |")
    print("|---|---:|---:|")
    for name, us in best.items():
        label = "`parse_uplink` alone, on (e)" if name == "parse_uplink" else name
        print(f"| {label} | {us:.2f} us | {us / single:.2f}x |")


if __name__ == "__main__":
    main()
