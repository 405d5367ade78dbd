"""Run modes against a real Mosquitto: accelerated clocks, real time, load from several processes into the ingester,
and the `livinglab simulate` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import Ingester, IngestSettings
from livinglab.embedded import MosquittoBroker, free_port
from livinglab.settings import MqttUrl
from simulators.faults import FaultRates
from simulators.load import LoadOptions, run_load
from simulators.plan import Period
from simulators.run import Mode, RunOptions, Simulation
from simulators.wire import WirePublisher, topic_field
from tests.support.roles import running, scalar, wait_until
from tests.support.sensors import register
from tests.support.simulation import CITY, city, simulate

pytestmark = pytest.mark.integration


class Counter:
    """Counts the messages that reach the broker under a prefix (QoS 1 subscription)."""

    def __init__(self, broker: MosquittoBroker, prefix: str) -> None:
        self.received: list[tuple[float, str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"count-{prefix[:13]}")
        self.client.on_message = lambda _c, _u, m: self.received.append((time.monotonic(), m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_accelerated_mode_keeps_the_simulated_clock(mqtt_broker: MosquittoBroker, topic_prefix: str) -> None:
    counter = Counter(mqtt_broker, topic_prefix)
    end = time.time() // 60 * 60
    started = time.monotonic()
    ledger = simulate(
        city(), mqtt_broker.url, topic_prefix, mode=Mode.ACCELERATED, speed=1800.0, period=Period(end - 3600, end)
    )
    elapsed = time.monotonic() - started
    wait_until(lambda: len(counter.received) >= ledger.messages, timeout_s=20)
    counter.close()
    assert len(counter.received) == ledger.messages == 3 * 60 + 12  # three 60 s sensors and one 300 s
    # An hour at 1800x takes two seconds, not less. (How the messages spread on arrival is not checked: a subscriber
    # on a busy machine may take them in one burst.)
    assert elapsed >= 3600 / 1800 * 0.9


def test_real_time_mode_publishes_as_readings_fall_due_and_stops(
    mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    scenario = city()
    fast = scenario.subset(["aq-ref-1"])
    sensor = fast.sensors[0]
    quick = type(sensor)(sensor.spec.model_copy(update={"interval_s": 1}), sensor.model, sensor.stream)
    fast = type(fast)(fast.name, fast.city, fast.timezone_offset_h, fast.districts, (quick,))
    counter = Counter(mqtt_broker, topic_prefix)
    options = RunOptions(mode=Mode.REALTIME, prefix=topic_prefix, client_id=f"rt-{topic_prefix[:13]}", progress=False)
    simulation = Simulation(fast, MqttUrl.parse(mqtt_broker.url), options)
    thread = threading.Thread(target=simulation.run)
    thread.start()
    time.sleep(3.5)
    simulation.stop()
    thread.join(timeout=10)
    counter.close()
    assert not thread.is_alive()
    assert 2 <= len(counter.received) <= 5
    for _, _, payload in counter.received:
        sent_at = json.loads(payload)[0]["bt"]
        assert abs(sent_at - time.time()) < 10


def test_periods_in_the_future_or_past_the_lateness_are_refused(mqtt_broker: MosquittoBroker) -> None:
    now = time.time()
    url = MqttUrl.parse(mqtt_broker.url)
    with pytest.raises(ValueError, match="future"):
        Simulation(city(), url, RunOptions(mode=Mode.ACCELERATED, period=Period(now - 3600, now + 3600)))
    with pytest.raises(ValueError, match="maximum lateness"):
        Simulation(city(), url, RunOptions(mode=Mode.BACKFILL, period=Period(now - 8 * 86400, now)))


@pytest.mark.parametrize(("payload", "pack", "qos"), [("senml", 1, 1), ("senml", 7, 0), ("json", 3, 1)])
def test_load_mode_from_two_processes_is_all_accepted(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str, payload: str, pack: int, qos: int
) -> None:
    register(fresh_database_url, city().specs)
    settings = IngestSettings(
        database_url=fresh_database_url,
        mqtt_url=mqtt_broker.url,
        topic_prefix=topic_prefix,
        client_id=f"ingest-{topic_prefix[:13]}",
    )
    options = LoadOptions(
        messages=1500, processes=2, pack=pack, qos=qos, payload=payload,  # type: ignore[arg-type]
        prefix=topic_prefix, client_id=f"load-{topic_prefix[:13]}", progress=False,
    )  # fmt: skip
    ingester = Ingester(settings)
    with running(ingester):
        assert ingester.wait_connected()
        result = run_load(str(CITY), MqttUrl.parse(mqtt_broker.url), options)
        assert result.messages == 1500
        assert result.readings >= 1500 * pack * 0.95
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") >= result.readings, timeout_s=60)
    assert scalar(fresh_database_url, "SELECT count(*) FROM readings") == result.readings
    assert scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 0
    assert len(result.per_process) == 2


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVINGLAB_")}
    return {**env, "LIVINGLAB_DATA_DIR": str(tmp_path / "data"), **extra}


def test_simulate_command_backfills_registers_and_writes_ground_truth(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str, tmp_path: Path
) -> None:
    env = _env(
        tmp_path,
        LIVINGLAB_DATABASE_URL=fresh_database_url,
        LIVINGLAB_MQTT_URL=mqtt_broker.url,
        LIVINGLAB_TOPIC_PREFIX=topic_prefix,
    )
    truth = tmp_path / "truth"
    command = [sys.executable, "-m", "livinglab", "simulate", "--scenario", str(CITY), "--mode", "backfill",
               "--days", "0.05", "--register", "--faults", "off,malformed=0.05", "--seed", "9",
               "--ground-truth", str(truth)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout == ""
    assert "sent " in result.stderr
    assert "expected rejections:" in result.stderr
    summary = json.loads((truth / "summary.json").read_text())
    assert summary["seed"] == 9
    assert summary["completed"] is True
    assert sum(summary["expected_rejections"].values()) == summary["faults"]["malformed"] > 0
    assert (truth / "agg_1m.csv").read_text().count("\n") > 100
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sensors").fetchone() == (4,)
    printed = subprocess.run(
        [sys.executable, "-m", "livinglab", "simulate", "--scenario", str(CITY), "--print-registry", "json"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [row["sensor_id"] for row in json.loads(printed.stdout)] == [s.sensor_id for s in city().sensors]
    assert FaultRates.parse("off,malformed=0.05").malformed == 0.05


@pytest.mark.parametrize("qos", [0, 1])
def test_lean_publisher_delivers_exact_bytes(mqtt_broker: MosquittoBroker, topic_prefix: str, qos: int) -> None:
    counter = Counter(mqtt_broker, topic_prefix)
    messages = [(f"{topic_prefix}/kota/air/é-{i}", bytes([i % 256]) * size) for i, size in enumerate((0, 1, 127, 128,
                16_383, 16_384, 300_000))]  # fmt: skip
    publisher = WirePublisher(MqttUrl.parse(mqtt_broker.url), f"wire-{topic_prefix[:13]}", qos=qos, window=2)
    publisher.connect()
    for topic, payload in messages:
        publisher.publish(topic_field(topic), payload)
    assert publisher.wait_acknowledged(timeout_s=30)
    publisher.close()
    wait_until(lambda: len(counter.received) >= len(messages), timeout_s=20)
    counter.close()
    assert [(t, p) for _, t, p in counter.received] == messages
    assert publisher.acknowledged == (len(messages) if qos else 0)


def test_load_mode_reports_a_broker_it_cannot_reach() -> None:
    url = MqttUrl.parse(f"mqtt://127.0.0.1:{free_port()}")
    result = run_load(str(CITY), url, LoadOptions(messages=100, processes=2, progress=False))
    assert result.messages == 0
    assert len(result.errors) == 2
    assert all("publisher" in error for error in result.errors)
