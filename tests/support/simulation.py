"""Simulation helpers: a small city, high fault rates, a simulation run into a real broker, and what the database
holds afterwards."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from ingest import Ingester, IngestSettings
from livinglab.settings import MqttUrl
from processing import Processor, ProcessorSettings
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.lorawan import Network
from simulators.messages import Omission
from simulators.plan import Period, Planner, PlanOptions
from simulators.run import Mode, RunOptions, Simulation
from simulators.scenario import Scenario, load_scenario
from tests.support.roles import running

CITY = Path(__file__).with_name("city.yaml")
#: Faults at rates high enough that a few simulated hours hold every kind, including every rejection reason.
FAULTS = FaultRates.parse(
    "gap=0.02,outage=0.5,burst=0.5,clock_skew=0.5,late=0.01,out_of_order=0.01,duplicate=0.02,"
    "conflicting_duplicate=0.01,malformed=0.06,unknown_sensor=0.005"
)


def city() -> Scenario:
    return load_scenario(str(CITY))


def simulate(scenario: Scenario, broker_url: str, prefix: str, **options: Any) -> Ledger:
    """Run a simulation to its end and return its ledger (readings kept, for ground truth)."""
    run = RunOptions(prefix=prefix, client_id=f"sim-{prefix[:13]}", keep_readings=True, progress=False, **options)
    simulation = Simulation(scenario, MqttUrl.parse(broker_url), run)
    ledger = simulation.run()
    assert simulation.completed
    return ledger


#: The faults a faulty day holds, each at least once.
FAULT_KINDS = frozenset({"gap", "outage", "burst", "clock_skew", "late", "out_of_order", "duplicate"})


def seed_with_faults(
    scenario: Scenario,
    prefix: str,
    period: Period,
    kinds: frozenset[str] = FAULT_KINDS,
    *,
    reasons: frozenset[str] = frozenset(),
    rates: FaultRates = FAULTS,
    first: int = 2026,
    network: Network | None = None,
) -> int:
    """The first seed from `first` whose plan of `period` holds every fault of `kinds` and a message built to be
    rejected for each of `reasons`, at least once.

    Spans (outages, bursts, clock skew) are drawn per sensor and calendar day, and a period that ends at this minute
    takes parts of two calendar days; rare faults may not happen at all in a short period. With a fixed seed, whether
    a test's period holds them depends on the time the test runs; choosing the seed from the plan keeps every fault
    in every run (planning a day of the test city takes about 0.5 s).
    """
    options = PlanOptions(prefix=prefix, rates=rates, network=network)
    for seed in range(first, first + 100):
        found: set[str] = set()
        rejected: set[str] = set()
        for item in Planner(scenario, seed, options).items(period):
            if isinstance(item, Omission):
                found.add(item.fault.type)
                continue
            found.update(note.type for note in item.faults)
            if item.reason is not None:
                rejected.add(item.reason.value)
        if found >= kinds and rejected >= reasons:
            return seed
    raise AssertionError(f"no seed from {first} plans every fault of {sorted(kinds)} and reason of {sorted(reasons)}")


@contextmanager
def faulty_day(url: str, broker_url: str, prefix: str, scenario: Scenario, **processor: Any) -> Iterator[Ledger]:
    """Simulate the day up to this minute, accelerated 1440x with `FAULTS` (the first seed from 2026 whose plan
    holds every kind of `FAULT_KINDS`), into an ingester and a processor (quick rollups; `processor`: more of its
    settings) running in this process; yields the ledger while both still run, so the caller can wait for them to
    catch up."""
    common = {"database_url": url, "mqtt_url": broker_url, "topic_prefix": prefix}
    ingester = Ingester(IngestSettings(**common, client_id=f"ingest-{prefix[:13]}"))
    quick = {"hour_rollup_delay_s": 0.5, "day_rollup_delay_s": 0.5, "rollup_interval_s": 0.5, "poll_interval_s": 0.5}
    end = time.time() // 60 * 60
    period = Period(end - 86400, end)
    seed = seed_with_faults(scenario, prefix, period)
    with running(ingester, Processor(ProcessorSettings(**common, **quick, **processor))):
        assert ingester.wait_connected()
        yield simulate(
            scenario, broker_url, prefix, mode=Mode.ACCELERATED, speed=1440.0, period=period, rates=FAULTS, seed=seed
        )


def rejected_by_reason(url: str) -> Counter[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return Counter(dict(conn.execute("SELECT reason, count(*) FROM rejected GROUP BY reason").fetchall()))


def stored_readings(url: str) -> dict[tuple[str, str, int], float]:
    """(sensor_id, quantity, ts in microseconds) -> value of every stored reading."""
    query = """
        SELECT s.sensor_id, q.name, (extract(epoch FROM r.ts) * 1000000)::bigint, r.value
        FROM readings r JOIN sensors s USING (sensor_key) JOIN quantities q ON q.code = r.quantity
    """
    with psycopg.connect(url, autocommit=True) as conn:
        return {(s, q, ts): v for s, q, ts, v in conn.execute(query).fetchall()}


def expected_readings(ledger: Ledger) -> dict[tuple[str, str, int], float]:
    return {
        (sensor_id, quantity, ts): value
        for (sensor_id, quantity), series in ledger.series().items()
        for ts, value in zip(series.ts_us.tolist(), series.value.tolist(), strict=True)
    }


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def platform_aggregates(url: str, table: str) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """(sensor_id, quantity, window start) -> (count, mean, min, max, p50, p95, completeness) of one aggregate table."""
    assert table in ("agg_1m", "agg_1h", "agg_1d")
    query = f"""
        SELECT s.sensor_id, q.name, extract(epoch FROM a.window_start)::bigint,
               a.count, a.mean, a.min, a.max, a.p50, a.p95, a.completeness
        FROM {table} a JOIN sensors s USING (sensor_key) JOIN quantities q ON q.code = a.quantity
    """
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in _rows(url, query)}


def platform_ispu(url: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(sensor_id, window_end) -> (ispu, category, critical_parameter, sub_indices)."""
    query = """
        SELECT s.sensor_id, extract(epoch FROM i.window_end)::bigint, i.ispu, i.category, i.critical_parameter,
               i.sub_indices
        FROM ispu_hourly i JOIN sensors s USING (sensor_key)
    """
    return {(r[0], r[1]): tuple(r[2:]) for r in _rows(url, query)}


def platform_aqi(url: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(sensor_id, hour) -> (aqi, category, dominant_pollutant, sub_indices, nowcast)."""
    query = """
        SELECT s.sensor_id, extract(epoch FROM a.hour)::bigint, a.aqi, a.category, a.dominant_pollutant, a.sub_indices,
               a.nowcast
        FROM aqi_hourly a JOIN sensors s USING (sensor_key)
    """
    return {(r[0], r[1]): tuple(r[2:]) for r in _rows(url, query)}


def platform_traffic(url: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(sensor_id, hour) -> (flow_veh_h, flow_pcu_h, capacity_pcu_h, degree_of_saturation, los, los_target, speed)."""
    query = """
        SELECT s.sensor_id, extract(epoch FROM t.hour)::bigint, t.flow_veh_h, t.flow_pcu_h, t.capacity_pcu_h,
               t.degree_of_saturation, t.los, t.los_target, t.mean_speed_kmh
        FROM traffic_hourly t JOIN sensors s USING (sensor_key)
    """
    return {(r[0], r[1]): tuple(r[2:]) for r in _rows(url, query)}


def close(a: float | None, b: float | None, rel: float = 1e-9, absolute: float = 1e-9) -> bool:
    """Equal within floating-point tolerance (None only equals None)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), absolute)


def differences(expected: dict[Any, tuple[Any, ...]], actual: dict[Any, tuple[Any, ...]]) -> list[str]:
    """Keys missing on either side and values that differ (floats within tolerance), as readable lines."""
    lines = [f"missing on the platform: {k}" for k in sorted(expected.keys() - actual.keys())]
    lines += [f"not in the ground truth: {k} = {actual[k]}" for k in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        want, got = expected[key], actual[key]
        same = len(want) == len(got) and all(
            close(w, g) if isinstance(w, float) or isinstance(g, float) else w == g
            for w, g in zip(want, got, strict=True)
        )
        if not same:
            lines.append(f"{key}: ground truth {want}, platform {got}")
    return lines
