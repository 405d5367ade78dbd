"""Any number of processors give the results of one: two `livinglab process` processes over one backlog against
one process over a copy of the same backlog, compared table by table, bit for bit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livinglab.launch import RoleProcess, create_database, drop_database, started, unique_name
from tests.processing.writes import write_readings
from tests.support import city_load
from tests.support.roles import rows, wait_until
from tests.support.sensors import air, register, traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = timedelta(hours=1)
AIR = ("pm25", "pm10", "o3", "co")
HOURS = 20
TRAFFIC = ("sm", "kr", "kb", "speed")

#: Every table the processor writes (computed_at left out), the service levels up to an hour the clock passed.
RESULTS = {
    **city_load.RESULTS,
    "completeness_hourly": "SELECT sensor_key, hour, received, expected FROM completeness_hourly WHERE hour < %(cut)s",
    "service_hourly": "SELECT city, district, service, period_start, numerator, denominator FROM service_hourly"
    " WHERE period_start < %(cut)s",
    "service_daily": "SELECT city, district, service, period_start, numerator, denominator FROM service_daily"
    " WHERE period_start < %(cut)s - interval '1 day'",
}


def _backlog(url: str, first_hour: datetime) -> None:
    """Twenty hours of a small city: three air stations and two counters every 5 minutes, with gaps."""
    rng = np.random.default_rng(20261128)
    minutes = first_hour.timestamp() + 300.0 * np.arange(HOURS * 12)
    station_specs = [
        air(f"aq-{i}", district=district, interval_s=300) for i, district in enumerate(("Menteng", "Menteng", "Gambir"))
    ]
    counter_specs = [
        traffic("tc-1", road_function="arteri_primer"),
        traffic(
            "tc-2",
            district="Gambir",
            road_type="2/2-TT",
            road_function="lokal_sekunder",
            city_population=2_000_000,
            carriageway_width_m=6.0,
        ),
    ]
    keys = register(url, *station_specs, *counter_specs)
    stations = [keys[s.sensor_id] for s in station_specs]
    counters = [keys[s.sensor_id] for s in counter_specs]
    for key in stations:
        for quantity in AIR:
            keep = rng.random(minutes.size) > 0.1  # some hours fall below 75 %
            write_readings(url, key, quantity, minutes[keep], np.round(rng.gamma(3.0, 20.0, keep.sum()), 1))
    for key in counters:
        for quantity, mean in zip(TRAFFIC, (200, 75, 10, 35), strict=True):
            values = rng.poisson(mean, minutes.size).astype(float)
            write_readings(url, key, quantity, minutes, values)


@pytest.fixture
def three_copies(pg_server_url: str, template_database: str) -> Iterator[tuple[str, str, datetime]]:
    source, one, two = (unique_name(p) for p in ("llt_src", "llt_one", "llt_two"))
    first_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - (HOURS + 2) * HOUR
    try:
        _backlog(create_database(pg_server_url, source, template=template_database), first_hour)
        yield (
            create_database(pg_server_url, one, template=source),
            create_database(pg_server_url, two, template=source),
            first_hour,
        )
    finally:
        for name in (source, one, two):
            drop_database(pg_server_url, name)


def _settings(url: str, worker: str) -> dict[str, str]:
    # Small batches, so the two processors interleave on the same hours and sensors.
    return {
        "LIVINGLAB_DATABASE_URL": url,
        "LIVINGLAB_WORKER_ID": worker,
        "LIVINGLAB_CLAIM_BATCH": "40",
        "LIVINGLAB_ROLLUP_BATCH": "15",
        "LIVINGLAB_HOUR_ROLLUP_DELAY_S": "0",
        "LIVINGLAB_DAY_ROLLUP_DELAY_S": "0",
        "LIVINGLAB_ROLLUP_INTERVAL_S": "0.05",
        "LIVINGLAB_POLL_INTERVAL_S": "0.2",
        "LIVINGLAB_LOG_LEVEL": "INFO",
    }


def _idle(url: str, processes: tuple[RoleProcess, ...]) -> bool:
    for process in processes:
        assert process.running, f"{process.name} exited:\n{process.log_tail()}"
    return rows(url, "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups)") == [(0,)]


def _results(url: str, cut: datetime) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted(rows(url, query, {"cut": cut})) for name, query in RESULTS.items()}


def test_two_processes_give_the_results_of_one(three_copies: tuple[str, str, datetime], tmp_path: Path) -> None:
    one, two, first_hour = three_copies
    # Service-level rows of the hour the clock tallies at start depend on the wall clock, not on the data.
    cut = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    claimed_by: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        query = (
            "SELECT claimed_by FROM dirty_windows WHERE claimed_until > now()"
            " UNION SELECT claimed_by FROM dirty_rollups WHERE claimed_until > now()"
        )
        while not stop.wait(0.02):
            claimed_by.update(r[0] for r in rows(two, query))

    watcher = threading.Thread(target=watch, daemon=True)
    pair = [RoleProcess("process", _settings(two, f"p{i}"), tmp_path, name=f"two-p{i}") for i in (1, 2)]
    watcher.start()
    try:
        with started(*pair) as processes:
            wait_until(lambda: _idle(two, processes), timeout_s=240, interval_s=0.5)
    finally:
        stop.set()
        watcher.join(timeout=10)
    with started(RoleProcess("process", _settings(one, "solo"), tmp_path, name="one")) as processes:
        wait_until(lambda: _idle(one, processes), timeout_s=240, interval_s=0.5)

    results_one, results_two = _results(one, cut), _results(two, cut)
    assert len(results_one["agg_1m"]) > 4500  # 3 stations x 4 quantities x ~216 readings + 2 counters x 4 x 240
    assert len(results_one["ispu_hourly"]) >= 3 * (HOURS + 23)
    assert any(r[2] is not None for r in results_one["ispu_hourly"])
    assert len(results_one["traffic_hourly"]) == 2 * HOURS
    assert {s for _, _, s, *_ in results_one["service_hourly"]} == {"air", "traffic", "data"}
    for table in RESULTS:
        assert results_two[table] == results_one[table], table
    assert {"p1", "p2"} <= claimed_by, claimed_by
    assert first_hour < cut
