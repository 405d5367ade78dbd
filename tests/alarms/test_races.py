"""Several processors and evaluators over one database: every alarm raised once, none missed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from livinglab.alarms.episodes import RaiseRequest, raise_alarm
from livinglab.alarms.evaluator import evaluate_cycle
from livinglab.launch import RoleProcess, started
from tests.alarms.support import add_rule, alarms
from tests.processing.writes import write_readings
from tests.support.roles import scalar, wait_until
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

SENSORS = 12
MINUTES = 30


def test_two_raises_of_one_pair_open_one_episode(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="pm25", metric="mean_1m:pm25", threshold=50)
    first, second = psycopg.connect(url), psycopg.connect(url)
    try:
        request = RaiseRequest(rule, "warning", (), key, 60.0)
        assert raise_alarm(first, request) is not None  # uncommitted: the second waits on the unique index
        outcome: list[object] = []
        racer = threading.Thread(target=lambda: outcome.append(raise_alarm(second, request)))
        racer.start()
        wait_until(lambda: scalar(url, "SELECT count(*) FROM pg_locks WHERE NOT granted") > 0)
        first.commit()
        racer.join(timeout=30)
        second.commit()
        assert outcome == [None]
    finally:
        first.close()
        second.close()
    assert [a["state"] for a in alarms(url, rule)] == ["active"]
    assert scalar(url, "SELECT count(*) FROM events WHERE type = 'alarm'") == 1


def test_a_second_evaluator_stands_by_while_one_holds_the_cursor(fresh_database_url: str) -> None:
    url = fresh_database_url
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as other:
        holder.execute("SELECT 1 FROM alarm_evaluator FOR UPDATE")
        assert evaluate_cycle(other) is None
        holder.rollback()
        assert evaluate_cycle(other) is not None


def _processor(url: str, worker: str, tmp_path: Path) -> RoleProcess:
    env = {
        "LIVINGLAB_DATABASE_URL": url,
        "LIVINGLAB_WORKER_ID": worker,
        "LIVINGLAB_CLAIM_BATCH": "20",  # small batches: the two processors interleave
        "LIVINGLAB_HOUR_ROLLUP_DELAY_S": "0",
        "LIVINGLAB_DAY_ROLLUP_DELAY_S": "0",
        "LIVINGLAB_POLL_INTERVAL_S": "0.2",
        "LIVINGLAB_ALARM_POLL_S": "0.1",
        "LIVINGLAB_LOG_LEVEL": "INFO",
    }
    return RoleProcess("process", env, tmp_path, name=worker)


def _caught_up(url: str, processes: tuple[RoleProcess, ...]) -> bool:
    for process in processes:
        assert process.running, f"{process.name} exited:\n{process.log_tail()}"
    return bool(
        scalar(
            url,
            "SELECT (SELECT count(*) FROM dirty_windows) = 0"
            " AND (SELECT cursor FROM alarm_evaluator) >= (SELECT coalesce(max(id), 0) FROM events"
            "      WHERE type = 'aggregates')",
        )
    )


def test_two_processors_raise_each_alarm_once(fresh_database_url: str, tmp_path: Path) -> None:
    url = fresh_database_url
    keys = register(url, [air(f"aq-{n:02d}") for n in range(SENSORS)])
    start = (datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 5)).timestamp()
    minutes = start + 60.0 * np.arange(MINUTES)
    rules = [
        add_rule(url, rule_id="pm25-any", metric="mean_1m:pm25", threshold=50),
        add_rule(url, rule_id="pm25-held", metric="mean_1m:pm25", threshold=50, for_s=600, severity="critical"),
        add_rule(url, rule_id="pm10-any", metric="mean_1m:pm10", threshold=50, city="jakarta"),
    ]
    # Every sensor's newest ten minutes are high; pm10 stays low.
    values = np.where(np.arange(MINUTES) >= MINUTES - 10, 80.0, 10.0)
    for key in keys.values():
        write_readings(url, key, "pm25", minutes, values)
        write_readings(url, key, "pm10", minutes, np.full(MINUTES, 10.0))
    with started(_processor(url, "p1", tmp_path), _processor(url, "p2", tmp_path)) as processes:
        wait_until(lambda: _caught_up(url, processes), timeout_s=180, interval_s=0.3)
    raised = [(a["rule_id"], a["sensor_id"]) for a in alarms(url)]
    expected = [(rule, sensor_id) for rule in rules[:2] for sensor_id in keys]
    assert sorted(raised) == sorted(expected)
    assert scalar(url, "SELECT count(*) FROM events WHERE type = 'alarm'") == len(expected)
    assert scalar(url, "SELECT count(*) FROM alarm_history") == len(expected)
