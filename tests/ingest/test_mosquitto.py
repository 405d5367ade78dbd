"""The shipped Mosquitto configuration (deploy/mosquitto): tuning shared with the test broker, and the ACL, checked by
what actually arrives on a real broker run from the shipped files with passwords made by the shipped tool."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.embedded import LOOPBACK, MOSQUITTO_TUNING, MosquittoBroker
from tests.support.ingest import ingesting
from tests.support.roles import scalar, wait_until
from tests.support.sensors import register

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORDS = {"ingest": "ingest-secret", "simulator": "simulator-secret", "aq-1": "one", "aq-2": "two"}


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {p[0]: p[1].strip() for p in pairs if len(p) == 2}


def test_the_shipped_config_has_the_tuning_of_the_test_broker(tmp_path: Path) -> None:
    shipped = _directives((DEPLOY / "mosquitto.conf").read_text())
    generated = _directives(MosquittoBroker(tmp_path).write_config().read_text())
    for name, value in MOSQUITTO_TUNING.items():
        assert shipped[name] == value, name
        assert generated[name] == value, name
    assert shipped["allow_anonymous"] == "false"
    assert {"password_file", "acl_file", "persistence_location"} <= shipped.keys()


class ShippedBroker(MosquittoBroker):
    """Mosquitto run from deploy/mosquitto/mosquitto.conf and acl, with paths and port made local."""

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        local = {
            "listener": f"{self.port} {self.host}",
            "password_file": str(self.state_dir / "passwd"),
            "acl_file": str(DEPLOY / "acl"),
            "persistence_location": f"{self.state_dir}/",
            "log_dest": "stdout",
        }
        lines = []
        for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
            name = line.split(None, 1)[0] if line.strip() and not line.startswith("#") else ""
            lines.append(f"{name} {local[name]}" if name in local else line)
        if os.geteuid() == 0:
            lines.append("user root")  # as MosquittoBroker does: the state directory is root's
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    broker = ShippedBroker(tmp_path / "mosquitto")
    broker.state_dir.mkdir(parents=True)
    env = {**os.environ, "MQTT_PASSWD_FILE": str(broker.state_dir / "passwd")}
    tool = str(DEPLOY / "mqtt-passwd")
    for user, password in PASSWORDS.items():
        command = "service" if user in ("ingest", "simulator") else "add-device"
        subprocess.run([tool, command, user, password], env=env, check=True, capture_output=True, timeout=30)
    generated = subprocess.run([tool, "add-device", "aq-3"], env=env, check=True, capture_output=True, text=True)
    assert len(generated.stdout.strip()) >= 24  # a fresh random password, shown once
    refused = subprocess.run([tool, "add-device", "ingest"], env=env, capture_output=True, timeout=30)
    assert refused.returncode != 0  # a device may not take a service account's name
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Client:
    """A logged-in MQTT 3.1.1 client that records what it receives."""

    def __init__(self, broker: MosquittoBroker, user: str | None, password: str | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.refused: Any = None
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.connect(LOOPBACK, broker.port)
        self.client.loop_start()
        self._connected.wait(10)

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.refused = reason
            self.client.disconnect()
        self._connected.set()

    def subscribe(self, *filters: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_acl_confines_each_account_to_its_topics(shipped_broker: ShippedBroker) -> None:
    air = "livinglab/v1/jakarta/air"
    ingest = Client(shipped_broker, "ingest", PASSWORDS["ingest"])
    one = Client(shipped_broker, "aq-1", PASSWORDS["aq-1"])
    two = Client(shipped_broker, "aq-2", PASSWORDS["aq-2"])
    simulator = Client(shipped_broker, "simulator", PASSWORDS["simulator"])
    anonymous = Client(shipped_broker, None)
    wrong = Client(shipped_broker, "aq-1", "not-the-password")
    clients = [ingest, one, two, simulator, anonymous, wrong]
    try:
        assert anonymous.refused is not None
        assert wrong.refused is not None
        ingest.subscribe("livinglab/v1/+/+/+", "livinglab/v1/+/+/+/errors")
        one.subscribe("livinglab/v1/#")  # asks for everything, may only get its own errors
        two.subscribe(f"{air}/aq-2/errors", f"{air}/aq-1/errors")
        one.publish(f"{air}/aq-1", b"own topic")
        one.publish(f"{air}/aq-2", b"someone else's topic")
        one.publish(f"{air}/aq-1/errors", b"forged notice")
        one.publish("livinglab/v1/jakarta/air", b"not a device topic")
        simulator.publish(f"{air}/aq-2", b"simulated")
        ingest.publish(f"{air}/aq-1/errors", b"notice for aq-1")
        ingest.publish(f"{air}/aq-2/errors", b"notice for aq-2")
        time.sleep(1.5)
    finally:
        for client in clients:
            client.close()
    assert sorted(ingest.received) == [(f"{air}/aq-1", b"own topic"), (f"{air}/aq-2", b"simulated")]
    assert one.received == [(f"{air}/aq-1/errors", b"notice for aq-1")]
    assert two.received == [(f"{air}/aq-2/errors", b"notice for aq-2")]


def test_the_ingester_works_with_its_account_and_the_shared_subscription(
    shipped_broker: ShippedBroker, fresh_database_url: str
) -> None:
    register(fresh_database_url, "aq-1")
    air = "livinglab/v1/jakarta/air"
    device = Client(shipped_broker, "aq-1", PASSWORDS["aq-1"])
    try:
        device.subscribe(f"{air}/aq-1/errors")
        settings = {
            "database_url": fresh_database_url,
            "mqtt_url": f"mqtt://ingest:{PASSWORDS['ingest']}@{LOOPBACK}:{shipped_broker.port}",
            "shared_group": "ingest",
        }
        with ingesting(**settings):
            device.publish(f"{air}/aq-1", json.dumps({"ts": time.time() - 5, "pm25": 12.5}).encode())
            device.publish(f"{air}/aq-1", b"{not json")
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 1)
            wait_until(lambda: len(device.received) == 1)
    finally:
        device.close()
    topic, payload = device.received[0]
    assert topic == f"{air}/aq-1/errors"
    assert json.loads(payload)["reason"] == "invalid_json"
