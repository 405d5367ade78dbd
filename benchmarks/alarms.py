"""`python -m benchmarks.alarms`: processing throughput with 100 alarm rules active over the large scenario, beside the
same run without rules (target: at least 0.9x).

A scratch database gets the large scenario's 3,024 sensors and `--minutes` minutes of readings for each (air
stations PM2.5 and PM10 around a level of their own, counters sm, kr, kb and speed as Poisson counts, at their own
interval), loaded by binary COPY with every minute queued as dirty, as the ingester leaves them; the levels put
about one station in six above the PM2.5 rules, so the rules raise and hold a few hundred alarms. That database is
the template of one copy per run, so every run starts from the same backlog. A run is one `livinglab process`
process (its alarm evaluator thread included) from start until every minute, hour and day is computed and the
evaluator's cursor has passed every change event; throughput is readings per second over that.

Variants, in alternating rounds: `no rules` (the baseline: the evaluator runs and reads the feed, with nothing to
evaluate), `100 rules` (42 district rules on PM2.5, 42 on DJ, 16 city-wide rules over every metric), and, for
reference, `alarms off` (LIVINGLAB_ALARMS=false: no evaluator at all).

The database server is LIVINGLAB_TEST_DATABASE_URL (like the tests), else an embedded one; scratch databases are
dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from benchmarks._servers import database_server
from livinglab.alarms.rules import RuleSpec
from livinglab.alarms.store import import_rules
from livinglab.domain import QUANTITIES
from livinglab.launch import RoleProcess, create_database, drop_database, started, unique_name
from livinglab.launch._databases import create_migrated_database
from livinglab.storage.copy import encode_binary_copy
from livinglab.storage.registry import upsert_sensors
from simulators import load_scenario

AIR = {"pm25": (4.0, 10.0), "pm10": (4.0, 15.0)}  # gamma shape, scale: means 40 and 60 ug/m3
TRAFFIC = {"sm": (200.0, 0.0), "kr": (60.0, 0.0), "kb": (8.0, 0.0), "speed": (35.0, 0.0)}  # Poisson means

_DIRTY = """
INSERT INTO dirty_windows (sensor_key, quantity, window_start)
SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM readings ORDER BY 1, 2, 3
"""
_CAUGHT_UP = """
SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups) = 0
   AND (SELECT cursor FROM alarm_evaluator) >= (SELECT coalesce(max(id), 0) FROM events WHERE type <> 'alarm')
"""


def _load(url: str, minutes: int) -> int:
    """Register the large scenario and write `minutes` minutes of readings ending an hour ago; returns readings."""
    scenario = load_scenario("large")
    rng = np.random.default_rng(15)
    end_s = (int(time.time()) // 3600 - 1) * 3600
    start_s = end_s - 60 * minutes
    total = 0
    with psycopg.connect(url) as conn:
        upsert_sensors(conn, scenario.specs)
        keys: dict[str, int] = dict(conn.execute("SELECT sensor_id, sensor_key FROM sensors").fetchall())
        columns: dict[str, list[np.ndarray]] = {"key": [], "quantity": [], "ts": [], "value": []}
        for spec in scenario.specs:
            ts_s = np.arange(start_s, end_s, spec.interval_s, dtype=np.int64)
            quantities = AIR if spec.kind.value == "air" else TRAFFIC
            for name, (a, b) in quantities.items():
                if b:
                    # A station's level (most below the thresholds, some above), a slow drift and a little noise:
                    # alarms are raised and held, not raised and cleared every minute by independent noise.
                    drift = 1 + 0.1 * np.sin(np.arange(ts_s.size) / 15 + rng.uniform(0, 6.3))
                    values = rng.gamma(a, b) * drift * rng.normal(1.0, 0.03, ts_s.size)
                else:
                    values = rng.poisson(a * spec.interval_s / 60, ts_s.size).astype(np.float64)
                columns["key"].append(np.full(ts_s.size, keys[spec.sensor_id], dtype=np.int32))
                columns["quantity"].append(np.full(ts_s.size, QUANTITIES[name].code, dtype=np.int16))
                columns["ts"].append(ts_s * 1_000_000)
                columns["value"].append(np.round(values.astype(np.float64), 1))
        key, quantity, ts_us, value = (np.concatenate(columns[c]) for c in ("key", "quantity", "ts", "value"))
        total = int(key.size)
        with conn.cursor().copy(
            "COPY readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(
                encode_binary_copy(
                    [
                        ("int4", key),
                        ("int2", quantity),
                        ("timestamptz", ts_us),
                        ("float8", value),
                        ("timestamptz", ts_us),
                    ]
                )
            )
        conn.execute(_DIRTY)
        conn.execute("UPDATE alarm_evaluator SET cursor = (SELECT coalesce(max(id), 0) FROM events)")
        conn.commit()
    return total


def hundred_rules(districts: list[str]) -> list[RuleSpec]:
    """42 district rules on PM2.5, 42 on DJ, 16 city-wide rules over every metric: 100 with the large city."""
    rules: list[dict[str, object]] = []
    for n, district in enumerate(districts):
        scope = {"city": "jakarta", "district": district, "severity": "warning"}
        rules.append({"rule_id": f"pm25-{n}", "name": f"PM2.5 {district}", "metric": "mean_1m:pm25", "op": ">",
                      "threshold": 60, "clear_threshold": 50, **scope})  # fmt: skip
        rules.append({"rule_id": f"dj-{n}", "name": f"DJ {district}", "metric": "degree_of_saturation", "op": ">",
                      "threshold": 0.85, "for_s": 3600, **scope})  # fmt: skip
    city_wide = [
        ("ispu", ">", 100.0, 0),
        ("ispu", ">", 200.0, 0),
        ("aqi", ">", 100.0, 0),
        ("aqi", ">", 150.0, 0),
        ("los_target_missed", ">=", 1.0, 7200),
        ("los_target_missed", ">=", 1.0, 0),
        ("degree_of_saturation", ">", 1.0, 0),
        ("completeness_1h", "<", 0.75, 0),
        ("silence_s", ">", 300.0, 0),
        ("mean_1m:pm10", ">", 100.0, 0),
        ("mean_1m:pm10", ">", 150.0, 180),
        ("mean_1m:pm25", ">", 55.4, 300),
        ("mean_1m:kr", ">", 90.0, 0),
        ("mean_1m:speed", "<", 20.0, 120),
        ("mean_1m:sm", ">", 250.0, 0),
        ("mean_1m:kb", ">", 15.0, 0),
    ]
    for n, (metric, op, threshold, for_s) in enumerate(city_wide):
        severity = "critical" if n % 3 == 0 else "info"
        rules.append({"rule_id": f"city-{n}", "name": f"{metric} {op} {threshold}", "metric": metric, "op": op,
                      "threshold": threshold, "for_s": for_s, "severity": severity, "city": "jakarta"})  # fmt: skip
    return [RuleSpec.model_validate(rule) for rule in rules]


def _run(server: str, template: str, variant: str, log_dir: Path) -> tuple[float, int]:
    """One run of `variant` on a copy of the template: (seconds until caught up, alarms raised)."""
    name = unique_name("llb_alarms_run")
    url = create_database(server, name, template=template)
    try:
        if variant == "100 rules":
            with psycopg.connect(url) as conn:
                districts = [r[0] for r in conn.execute("SELECT DISTINCT district FROM sensors ORDER BY 1")]
                import_rules(conn, hundred_rules(districts))
                conn.execute("UPDATE alarm_rules SET evaluated_revision = revision")  # measure the feed, not setup
                conn.commit()
        env = {
            "LIVINGLAB_DATABASE_URL": url,
            "LIVINGLAB_WORKER_ID": "bench",
            "LIVINGLAB_HOUR_ROLLUP_DELAY_S": "0",
            "LIVINGLAB_DAY_ROLLUP_DELAY_S": "0",
            "LIVINGLAB_POLL_INTERVAL_S": "0.2",
            "LIVINGLAB_LOG_LEVEL": "WARNING",
            "LIVINGLAB_ALARMS": "false" if variant == "alarms off" else "true",
        }
        with psycopg.connect(url, autocommit=True) as conn:
            check = _CAUGHT_UP if variant != "alarms off" else _CAUGHT_UP.split("AND")[0]
            with started(RoleProcess("process", env, log_dir, name=f"process-{name}")) as (process,):
                begin = time.monotonic()
                while not conn.execute(check).fetchone()[0]:  # type: ignore[index]
                    if not process.running:
                        raise RuntimeError(f"the processor exited:\n{process.log_tail()}")
                    time.sleep(0.1)
                elapsed = time.monotonic() - begin
            alarms = conn.execute("SELECT count(*) FROM alarms").fetchone()[0]  # type: ignore[index]
        return elapsed, int(alarms)
    finally:
        drop_database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=int, default=20, help="minutes of readings per sensor (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant (default 3)")
    parser.add_argument("--alarms-off", action="store_true", help="also run without the evaluator (reference)")
    args = parser.parse_args()
    variants = ["no rules", "100 rules"] + (["alarms off"] if args.alarms_off else [])
    with database_server() as server, tempfile.TemporaryDirectory() as logs:
        template = unique_name("llb_alarms_template")
        template_url = create_migrated_database(server, template)
        try:
            readings = _load(template_url, args.minutes)
            print(f"\n## Processing the large scenario's backlog: {readings:,} readings of 3,024 sensors, "
                  f"{args.minutes} minutes each; {args.rounds} rounds, variants alternating within each")  # fmt: skip
            times: dict[str, list[float]] = {v: [] for v in variants}
            raised: dict[str, int] = {}
            for _ in range(args.rounds):
                for variant in variants:
                    elapsed, alarms = _run(server, template, variant, Path(logs))
                    times[variant].append(elapsed)
                    raised[variant] = alarms
        finally:
            drop_database(server, template)
    baseline = readings / statistics.median(times["no rules"])
    print("\n| variant | readings/s (median run) | vs no rules | alarms raised | runs (s) |")
    print("|---|---:|---:|---:|---|")
    for variant in variants:
        rate = readings / statistics.median(times[variant])
        runs = ", ".join(f"{t:.1f}" for t in times[variant])
        print(f"| {variant} | {rate:,.0f} | {rate / baseline:.2f} | {raised[variant]:,} | {runs} |")
    # On a shared machine the load moves between rounds; runs next to each other see about the same load.
    ratios = [b / a for a, b in zip(times["100 rules"], times["no rules"], strict=True)]
    print(
        f"\n100 rules / no rules, run next to each other: {', '.join(f'{r:.2f}' for r in ratios)}"
        f" (median {statistics.median(ratios):.2f}); target >= 0.9"
    )


if __name__ == "__main__":
    main()
