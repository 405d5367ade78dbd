"""Ingest benchmark: the ingester end to end beside baselines measured in the same run, on this machine.

    python -m benchmarks.ingest [--messages 100000] [--packs 8000] [--rounds 2] [--quick] [--no-ablation]

Everything runs on loopback: a PostgreSQL of its own (initdb in a temporary directory, fsync on, commit timestamps
on), a Mosquitto with the shipped tuning, the ingester as `python -m livinglab ingest` with its default settings,
and the load from several `mosquitto_pub -l` processes (one per sensor), so the publisher is not the limit.
Baselines and the ingester take turns, round by round, so noise on a shared machine moves both.

(a) Single-reading messages, QoS 1, end to end: from the start of publishing until every message is committed and
    acknowledged (once the ingester's stored-readings counter, counted after the acknowledgements, reaches the
    total, the commit timestamp of the last readings ends the run; the counter is read every 0.1 s, as each read
    costs the ingester CPU time), beside a paho subscriber that only counts (paho acknowledges each message on
    receipt). Target: at least 0.8 of it.
(b) SenML packs of 100 readings, readings/s the same way, beside binary COPY of as many rows into the same table
    (with its primary key index), in transactions of 100,000 rows. Target: at least 0.5 of it.
(c) The pack load of (b), fewer packs, through a naive ingester: paho, json.loads, one INSERT per reading in
    autocommit mode. Target: the ingester at least 20x it.
(d) A simulated city: `livinglab simulate --mode load` on the `large` scenario (3,024 air stations and traffic
    counters, several quantities each, sensors taking turns) from several publisher processes, QoS 1, measured
    like (a) beside the same count-only subscriber on the same load. The clock starts when the publishers start
    together (after loading the scenario and planning); their own rate into the broker, in the baseline run, shows
    they are not the limit. Target: as (a).
(e) ChirpStack uplinks of about 1 KB with one or two readings, measured like (a) in runs small enough for the
    ingester's inbox, back to back with (a) and with (a)'s readings padded to the same size, also in CPU time per
    message (`benchmarks/ingest/_lorawan.py`). Target: at least 0.8 of (a)'s message rate, memory unchanged.
Latency: single readings at a steady rate well below capacity; `ts` is the moment each is handed to mosquitto_pub,
    and PostgreSQL's commit timestamp of its row ends it (publish to commit).
Peak memory: the ingester process's peak resident set (VmHWM) in runs (a) and (b).
Ablation, so that each fast path keeps its place by a measured gain:
- paho hooks (`ingest/_paho.py`): in each round, the messages of load (a) queued by the broker while an ingester
  was away, then drained by it, with all hooks on, one turned off (`LIVINGLAB_PAHO_HOOKS`) and all off (paho's
  own paths), the order reversed every other round. With the backlog waiting the ingester is the limit, not the
  publishers: msg/s, and the ingester's CPU time (all its threads, user and system) per message, from its first
  stored readings to the last; best of the rounds.
- decoder plain paths (`ingest/_plain.py`): the build step's CPU time per message on each load shape, with every
  path on, with that shape's path off and with the full walk alone (`benchmarks/ingest/_decoding.py`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks._servers import configured_bindir
from benchmarks.ingest import _decoding, _load, _lorawan
from benchmarks.ingest._platform import Bench, cpu_s, metric, peak_rss_mib, stored, wait_until
from ingest._paho import PAHO_HOOKS
from livinglab.embedded import MosquittoBroker
from livinglab.launch import PostgresCluster, find_bindir
from livinglab.settings import MqttUrl
from livinglab.storage import migrate
from livinglab.storage.copy import encode_binary_copy
from livinglab.storage.registry import upsert_sensors
from simulators.load import LoadOptions, run_load
from simulators.scenario import load_scenario

_LATENCY = (
    "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
    " (ORDER BY extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)) FROM readings"
)


def _consumer_last(process: subprocess.Popen[str]) -> float:
    import json

    assert process.stdout is not None
    result: dict[str, Any] = json.loads(process.stdout.readline())
    return float(result["last"])


def run_single(bench: Bench, messages: int, publishers: int) -> tuple[float, float, float]:
    """(a): (ingester msg/s, count-only baseline msg/s, ingester peak MiB)."""
    sensors = [f"single-{i}" for i in range(publishers)]
    files = _load.write_single_files(bench.work, sensors, messages // publishers, bench.base_ts)
    total = sum(f.messages for f in files)

    bench.reset(sensors)
    with bench.consumer("count", total) as consumer:
        started = _load.publish_files(bench.broker.port, files)
        baseline = total / (_consumer_last(consumer) - started)

    rate, peak = _ingest_files(bench, sensors, files, total, "all messages")
    return rate, baseline, peak


def _ingest_files(
    bench: Bench, sensors: list[str], files: list[_load.LoadFile], readings: int, what: str
) -> tuple[float, float]:
    """Publish `files` to a fresh ingester and wait until it has stored their `readings`: (readings/s from the
    first publish, the ingester's peak MiB)."""
    bench.reset(sensors)
    with bench.ingester() as (process, port):
        started = _load.publish_files(bench.broker.port, files)
        done = stored(bench, port, readings, what)
        peak = peak_rss_mib(process.pid)
    assert bench.count() == readings, "not every reading was stored"
    return readings / (done - started), peak


def run_backlog(bench: Bench, sensors: list[str], files: list[_load.LoadFile], paho_hooks: str) -> tuple[float, float]:
    """Load (a) queued by the broker while the ingester was away, then drained by it: (msg/s, CPU us per message).

    With the whole load waiting at the broker the ingester is the limit, not the publishers, so msg/s is its
    capacity and CPU per message is not diluted by idle time. Both are taken from the first moment the ingester
    reports stored readings (after start-up) to the last.
    """
    total = sum(f.messages for f in files)
    bench.reset(sensors)
    client_id = f"bench-backlog-{bench.runs + 1}"
    with bench.ingester(paho_hooks, client_id=client_id, keep_session=True):
        pass  # subscribed once: the broker now queues for the session
    _load.publish_files(bench.broker.port, files)
    accepted = "livinglab_ingest_readings_accepted_total"
    with bench.ingester(paho_hooks, client_id=client_id) as (process, port):
        first_at = wait_until(lambda: metric(port, accepted) > 0, 60, "first readings", interval_s=0.005)
        cpu_first, first = cpu_s(process.pid), metric(port, accepted)
        done = wait_until(lambda: metric(port, accepted) >= total, 300, "backlog drained", interval_s=0.05)
        cpu = cpu_s(process.pid) - cpu_first
    assert bench.count() == total, "not every reading was stored"
    drained = total - first
    if drained < total / 2:
        raise RuntimeError(f"only {drained:,.0f} of {total:,} messages left to measure after start-up")
    return drained / (done - first_at), cpu / drained * 1e6


def run_hooks_off(
    bench: Bench, messages: int, publishers: int, *, reverse: bool = False
) -> dict[str, tuple[float, float]]:
    """Backlogs of load (a) drained with all paho hooks on, each one off, and all off: {variant: (msg/s, CPU us)}.
    `reverse` runs the variants in the opposite order (alternate rounds, so a trend in the machine's load spreads
    over all of them)."""
    sensors = [f"single-{i}" for i in range(publishers)]
    files = _load.write_single_files(bench.work, sensors, messages // publishers, bench.base_ts)
    variants = ["on", *sorted(PAHO_HOOKS), "all"]
    results = {}
    for variant in reversed(variants) if reverse else variants:
        hooks = {"on": PAHO_HOOKS, "all": frozenset()}.get(variant, PAHO_HOOKS - {variant})
        results[variant] = run_backlog(bench, sensors, files, ",".join(sorted(hooks)) or "none")
    return {variant: results[variant] for variant in variants}


def run_packs(bench: Bench, packs: int, publishers: int) -> tuple[float, float, float]:
    """(b): (ingester readings/s, binary COPY readings/s, ingester peak MiB)."""
    sensors = [f"pack-{i}" for i in range(publishers)]
    files = _load.write_pack_files(bench.work, sensors, packs // publishers, bench.base_ts)
    readings = sum(f.readings for f in files)

    ours, peak = _ingest_files(bench, sensors, files, readings, "all packs")

    bench.reset(sensors)
    copy_rate = _copy_rate(bench, readings, len(sensors))
    return ours, copy_rate, peak


def _copy_rate(bench: Bench, readings: int, sensors: int, chunk: int = 100_000) -> float:
    """Binary COPY of `readings` rows shaped like the pack load, in transactions of `chunk` rows."""
    with psycopg.connect(bench.database_url) as conn:
        keys = [k for (k,) in conn.execute("SELECT sensor_key FROM sensors ORDER BY sensor_key").fetchall()]
        per_sensor = readings // sensors
        i = np.arange(per_sensor)
        started = time.perf_counter()
        for key in keys[:sensors]:
            for lo in range(0, per_sensor, chunk):
                part = i[lo : lo + chunk]
                n = part.size
                ts_us = ((bench.base_ts + part * _load.STEP_S) * 1e6).astype(np.int64)
                data = encode_binary_copy(
                    [
                        ("int4", np.full(n, key, dtype=np.int32)),
                        ("int2", np.ones(n, dtype=np.int16)),
                        ("timestamptz", ts_us),
                        ("float8", (part % 500 + 0.25).astype(np.float64)),
                        ("timestamptz", np.full(n, int(time.time() * 1e6), dtype=np.int64)),
                    ]
                )
                with conn.cursor().copy(
                    "COPY readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(data)
                conn.commit()
        elapsed = time.perf_counter() - started
    return readings / elapsed


def run_city(bench: Bench, scenario: str, messages: int, processes: int, pack: int) -> tuple[float, ...]:
    """(d): (ingester msg/s, ingester readings/s, count-only msg/s, simulator publishing msg/s, sensors)."""
    url = MqttUrl.parse(bench.broker.url)
    options = LoadOptions(messages=messages, processes=processes, pack=pack, qos=1, progress=False)
    specs = load_scenario(scenario).specs

    def register() -> None:
        bench.reset([])
        with psycopg.connect(bench.database_url, autocommit=True) as conn:
            upsert_sensors(conn, specs)

    register()
    with bench.consumer("count", messages) as consumer:
        load = run_load(scenario, url, options)
        baseline = messages / (_consumer_last(consumer) - load.started_at)
    if load.errors or load.messages != messages:
        raise RuntimeError(f"the simulator sent {load.messages:,} of {messages:,} messages: {load.errors}")
    publishing = load.messages_per_s

    register()
    with bench.ingester() as (_process, port):
        load = run_load(scenario, url, options)
        done = stored(bench, port, load.readings, "city")
    assert bench.count() == load.readings, "not every reading of the simulated city was stored"
    elapsed = done - load.started_at
    return messages / elapsed, load.readings / elapsed, baseline, publishing, float(len(specs))


def run_naive(bench: Bench, packs: int, publishers: int) -> float:
    """(c): naive ingester readings/s on the pack load."""
    sensors = [f"naive-{i}" for i in range(publishers)]
    files = _load.write_pack_files(bench.work, sensors, max(1, packs // publishers), bench.base_ts)
    readings = sum(f.readings for f in files)
    bench.reset(sensors)
    with bench.consumer("naive", readings) as consumer:
        started = _load.publish_files(bench.broker.port, files)
        last = _consumer_last(consumer)
    return readings / (last - started)


def run_latency(bench: Bench, rate: float, seconds: float, publishers: int) -> tuple[float, float, int]:
    """Publish-to-commit latency (p50, p99 in ms) of single readings at a steady rate, and how many there were."""
    sensors = [f"paced-{i}" for i in range(publishers)]
    bench.reset(sensors)
    with bench.ingester():
        sent = _load.publish_paced(bench.broker.port, sensors, rate, seconds)
        wait_until(lambda: bench.count() >= sent, 120, "all probes stored", interval_s=0.2)
    with psycopg.connect(bench.database_url) as conn:
        row = conn.execute(_LATENCY).fetchone()
    assert row is not None
    p50, p99 = row[0]
    return p50 * 1000, p99 * 1000, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="(a) single-reading messages per run")
    parser.add_argument("--packs", type=int, default=8_000, help="(b) packs of 100 readings per run")
    parser.add_argument("--naive-packs", type=int, default=200, help="(c) packs through the naive ingester")
    parser.add_argument("--publishers", type=int, default=4, help="mosquitto_pub processes (one sensor each)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of (a) and (b), taking turns with baselines")
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="messages/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--city-messages", type=int, default=100_000, help="(d) messages per run (0: skip (d))")
    parser.add_argument("--city-scenario", default="large", help="(d) simulator scenario")
    parser.add_argument("--city-processes", type=int, default=2, help="(d) simulator publisher processes")
    parser.add_argument("--city-pack", type=int, default=1, help="(d) readings per message")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke run)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the rows with a fast path turned off")
    parser.add_argument("--backlog-messages", type=int, default=100_000, help="messages of each paho-hook backlog")
    _lorawan.add_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.messages, args.packs, args.naive_packs, args.rounds, args.latency_seconds = 20_000, 1_000, 40, 1, 3.0
        args.city_messages = min(args.city_messages, 20_000)
        args.backlog_messages = min(args.backlog_messages, 50_000)

    bindir, reason = find_bindir(configured_bindir())
    if bindir is None:
        print(f"{reason} (set LIVINGLAB_TEST_PG_BINDIR)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="livinglab-bench-ingest-"))
    server = PostgresCluster(bindir, durable=True, settings={"track_commit_timestamp": "on", "max_wal_size": "4GB"})
    broker = MosquittoBroker(work / "mosquitto")
    try:
        url = server.start()
        migrate(url)
        broker.start()
        bench = Bench(work, url, broker)
        singles, packs, cities, hooks_off, uplinks = [], [], [], [], []
        for round_ in range(1, args.rounds + 1):
            singles.append(run_single(bench, args.messages, args.publishers))
            print(f"round {round_} (a): ingester {singles[-1][0]:,.0f} msg/s, count-only {singles[-1][1]:,.0f} msg/s",
                  flush=True)  # fmt: skip
            if not args.no_ablation:
                hooks_off.append(run_hooks_off(bench, args.backlog_messages, args.publishers, reverse=round_ % 2 == 0))
                rates = ", ".join(f"{hook} {r:,.0f} msg/s {cpu:.1f} us" for hook, (r, cpu) in hooks_off[-1].items())
                print(f"round {round_} backlog of (a), paho hooks: {rates}", flush=True)
            if args.uplinks:
                uplinks.extend(_lorawan.run_uplinks(bench, args.uplinks, args.publishers))
                print(f"round {round_} (e): {uplinks[-1].uplinks.rate:,.0f} msg/s", flush=True)
            packs.append(run_packs(bench, args.packs, args.publishers))
            print(f"round {round_} (b): ingester {packs[-1][0]:,.0f} readings/s, COPY {packs[-1][1]:,.0f} rows/s",
                  flush=True)  # fmt: skip
            if args.city_messages:
                cities.append(run_city(bench, args.city_scenario, args.city_messages, args.city_processes,
                                       args.city_pack))  # fmt: skip
                print(f"round {round_} (d): ingester {cities[-1][0]:,.0f} msg/s, count-only {cities[-1][2]:,.0f} msg/s,"
                      f" simulator publishing {cities[-1][3]:,.0f} msg/s", flush=True)  # fmt: skip
        naive = run_naive(bench, args.naive_packs, args.publishers)
        p50, p99, probes = run_latency(bench, args.latency_rate, args.latency_seconds, args.publishers)
    finally:
        broker.stop()
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)
    paths = [] if args.no_ablation else _decoding.measure_paths(rounds=5 if args.quick else 25)

    med = statistics.median
    a_ours, a_base = med(s[0] for s in singles), med(s[1] for s in singles)
    b_ours, b_copy = med(p[0] for p in packs), med(p[1] for p in packs)
    print()
    print(f"Ingest benchmark: medians of {args.rounds} round(s); {args.publishers} mosquitto_pub processes")
    print()
    print("| figure | ingester | same-run baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| (a) single-reading messages, QoS 1, end to end | {a_ours:,.0f} msg/s"
        f" | paho count-only subscriber {a_base:,.0f} msg/s | {a_ours / a_base:.2f} | >= 0.8 |"
    )
    print(
        f"| (b) SenML packs of 100 readings | {b_ours:,.0f} readings/s"
        f" | binary COPY with index {b_copy:,.0f} rows/s | {b_ours / b_copy:.2f} | >= 0.5 |"
    )
    print(
        f"| (c) the same packs | {b_ours:,.0f} readings/s"
        f" | naive ingester (INSERT per reading) {naive:,.0f} readings/s | {b_ours / naive:.0f}x | >= 20x |"
    )
    if cities:
        d_ours, d_readings, d_base = (med(c[i] for c in cities) for i in range(3))
        d_pub, d_sensors = med(c[3] for c in cities), int(cities[0][4])
        print(
            f"| (d) simulated city ({args.city_scenario}: {d_sensors:,} sensors; {args.city_processes} publisher"
            f" processes, {args.city_pack} reading(s) a message), QoS 1, end to end | {d_ours:,.0f} msg/s"
            f" ({d_readings:,.0f} readings/s) | paho count-only subscriber {d_base:,.0f} msg/s (simulator publishing"
            f" {d_pub:,.0f} msg/s) | {d_ours / d_base:.2f} | >= 0.8 |"
        )
    print(
        f"| publish-to-commit latency at {args.latency_rate:,.0f} msg/s ({probes:,} readings) | p50 {p50:.0f} ms,"
        f" p99 {p99:.0f} ms | | | |"
    )
    print(f"| ingester peak memory (VmHWM) | (a) {max(s[2] for s in singles):.0f} MiB,"
          f" (b) {max(p[2] for p in packs):.0f} MiB | | | |")  # fmt: skip
    if hooks_off:
        print_hooks_off(hooks_off)
    if paths:
        _decoding.print_paths_off(paths)
    print("\n".join(_lorawan.rows(uplinks, singles)))
    return 0


def print_hooks_off(runs: list[dict[str, tuple[float, float]]]) -> None:
    """The paho-hook ablation table: backlogs of load (a) drained with each hook off, beside all on. Best of the
    rounds (highest msg/s, lowest CPU), as for the decoder table: on a shared machine the least disturbed run is
    the one that shows what the code costs."""
    rate, cpu_us = max(r["on"][0] for r in runs), min(r["on"][1] for r in runs)
    print()
    print(f"paho hooks: a backlog of load (a) drained by the ingester, best of {len(runs)} round(s)")
    print()
    print("| paho hooks | msg/s | vs all on | ingester CPU per message | vs all on |")
    print("|---|---:|---:|---:|---:|")
    for variant in runs[0]:
        off_rate, off_cpu = max(r[variant][0] for r in runs), min(r[variant][1] for r in runs)
        label = {"on": "all on", "all": "all off (paho's own paths)"}.get(variant, f"`{variant}` off")
        print(f"| {label} | {off_rate:,.0f} | {off_rate / rate:.2f} | {off_cpu:.1f} us | {off_cpu / cpu_us:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
