"""The shipped broker configuration (deploy/mosquitto), tried as a device with valid credentials would: run in a real
Mosquitto from the shipped files on free loopback ports, with credentials issued by `livinglab mqtt`, an ingester on
the services listener in the shared group `ingest`, and judged by what reaches the database.

Devices are limited to their own topic, city gateways to their city's topics; no device may subscribe beyond its
own `/errors` topic (so `$share/ingest/...` and `#` take nobody's readings), connect with another client id (so no
takeover of an ingester's or another device's session), publish retained messages, or use the services listener.
Devices of an old password file keep their passwords through `livinglab mqtt migrate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import Ingester
from livinglab.brokeraccess.control import connected
from livinglab.brokeraccess.credentials import issue_device, remove_client, set_password
from livinglab.brokeraccess.dynsec import BrokerAccessError, new_password
from livinglab.domain import Kind
from livinglab.embedded import LOOPBACK, MOSQUITTO_TUNING, MosquittoBroker
from livinglab.settings import MqttUrl
from tests.support.brokers import DEPLOY, ShippedBroker
from tests.support.ingest import ingesting
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import air, register, traffic

pytestmark = pytest.mark.integration

INGESTER_ID = "livinglab-ingest-1"
SENSORS = {"aq-1": ("jakarta", "air"), "aq-2": ("jakarta", "air"), "tc-1": ("jakarta", "traffic")}
SENSORS |= {"aq-old": ("jakarta", "air"), "bd-1": ("bandung", "air")}


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {p[0]: p[1].strip() for p in pairs if len(p) == 2}


def test_the_shipped_config_has_the_tuning_of_the_test_broker(tmp_path: Path) -> None:
    shipped = _directives((DEPLOY / "mosquitto.conf").read_text())
    generated = _directives(MosquittoBroker(tmp_path).write_config().read_text())
    for name, value in MOSQUITTO_TUNING.items():
        assert shipped[name] == value, name
        assert generated[name] == value, name
    assert shipped["per_listener_settings"] == "true"
    assert shipped["allow_anonymous"] == "false"
    assert shipped["retain_available"] == "false"


def _livinglab(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "livinglab", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Platform:
    broker: ShippedBroker
    database_url: str
    passwords: dict[str, str]
    ingester: Ingester
    env: dict[str, str]

    def readings(self, sensor_id: str) -> int:
        return int(
            scalar(
                self.database_url,
                "SELECT count(*) FROM readings JOIN sensors USING (sensor_key) WHERE sensor_id = %s",
                (sensor_id,),
            )
        )

    def rejected(self) -> int:
        return int(scalar(self.database_url, "SELECT count(*) FROM rejected"))


@pytest.fixture(scope="module")
def platform(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    url = module_database_url
    broker = ShippedBroker(tmp_path_factory.mktemp("shipped") / "mosquitto")
    try:
        register(url, *(air(s, c) if k == "air" else traffic(s, c) for s, (c, k) in SENSORS.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVINGLAB_")}
        env["LIVINGLAB_DATABASE_URL"] = url
        broker.state_dir.mkdir(parents=True)
        # The services listener's accounts, as docker compose writes them from .env.
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(broker.services_passwd), "ingest", "ingest-pw"], check=True)
        # A password file of the old configuration, with a device whose password must survive the move.
        old = broker.state_dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(old), "aq-old", "old-pw"], check=True)
        subprocess.run(["mosquitto_passwd", "-b", str(old), "ingest", "whatever"], check=True)
        admin = _livinglab("mqtt", "init", str(broker.dynsec), env=env)
        _livinglab("mqtt", "migrate", "--passwd", str(old), "--dynsec", str(broker.dynsec), env=env)
        broker.start()
        env["LIVINGLAB_MQTT_ADMIN_URL"] = f"mqtt://admin:{admin}@{LOOPBACK}:{broker.port}"
        passwords = {"aq-old": "old-pw", "aq-2": "two"}
        passwords["aq-1"] = _livinglab("mqtt", "device", "add", "aq-1", env=env)  # city and kind from the registry
        _livinglab("mqtt", "device", "add", "aq-2", "--city", "jakarta", "--kind", "air", "--password", "two", env=env)
        passwords["gw-jakarta"] = _livinglab("mqtt", "gateway", "add", "gw-jakarta", "--city", "jakarta", env=env)
        with connected(MqttUrl.parse(env["LIVINGLAB_MQTT_ADMIN_URL"])) as control:  # the library the CLI calls
            for sensor_id in ("tc-1", "bd-1"):
                passwords[sensor_id] = new_password()
                city, kind = SENSORS[sensor_id]
                issue_device(
                    control,
                    prefix="livinglab/v1",
                    sensor_id=sensor_id,
                    city=city,
                    kind=Kind(kind),
                    password=passwords[sensor_id],
                )
        settings = {
            "database_url": url,
            "mqtt_url": f"mqtt://ingest:ingest-pw@{LOOPBACK}:{broker.services_port}",
            "client_id": INGESTER_ID,
            "shared_group": "ingest",
        }
        with ingesting(**settings) as ingester:
            yield Platform(broker, url, passwords, ingester, env)
    finally:
        broker.stop()


class Client:
    """An MQTT client that records what happens to it."""

    def __init__(
        self, port: int, user: str | None, password: str | None, *, client_id: str | None = None, v5: bool = True
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.refused: Any = None
        self.disconnects: list[Any] = []
        self.granted: list[Any] = []
        self._connected = threading.Event()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or user or "", protocol=protocol)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: self.disconnects.append(reason)
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        assert self._connected.wait(10)

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.refused = reason
            self.client.disconnect()
        self._connected.set()

    def subscribe(self, *filters: str) -> list[Any]:
        done = threading.Event()

        def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
            self.granted = list(reasons)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(10)
        return self.granted

    def publish(self, topic: str, payload: bytes) -> Any:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _reading(value: float, at: float | None = None) -> bytes:
    return json.dumps({"ts": round(at if at is not None else time.time() - 5, 3), "pm25": value}).encode()


def _refused(port: int, user: str | None, password: str | None, **options: Any) -> bool:
    """Whether the broker refuses this connection."""
    client = Client(port, user, password, **options)
    client.close()
    return client.refused is not None


def _device(platform: Platform, sensor_id: str, **options: Any) -> Client:
    client = Client(platform.broker.port, sensor_id, platform.passwords[sensor_id], **options)
    assert client.refused is None, client.refused
    return client


def test_each_credential_reaches_only_its_own_topics(platform: Platform) -> None:
    counts = {s: platform.readings(s) for s in SENSORS}
    rejected = platform.rejected()
    air, bandung = "livinglab/v1/jakarta/air", "livinglab/v1/bandung/air"
    one, old, bd = _device(platform, "aq-1"), _device(platform, "aq-old"), _device(platform, "bd-1")
    gateway = _device(platform, "gw-jakarta")
    try:
        one.publish(f"{air}/aq-1", _reading(1001))  # its own topic: stored
        one.publish(f"{air}/aq-2", _reading(1002))  # another device's topic
        one.publish(f"{bandung}/aq-1", _reading(1003))  # its own id under another city
        one.publish(f"{bandung}/bd-1", _reading(1004))  # another city's device
        one.publish("livinglab/v1/jakarta/traffic/aq-1", _reading(1005))  # its own id, another kind
        old.publish(f"{air}/aq-old", _reading(1006))  # migrated from the old password file, same password
        bd.publish(f"{bandung}/bd-1", _reading(1007))
        gateway.publish(f"{air}/aq-2", _reading(1008))  # a gateway publishes for every device of its city
        gateway.publish("livinglab/v1/jakarta/traffic/tc-1", json.dumps({"ts": time.time() - 5, "sm": 3}).encode())
        gateway.publish(f"{bandung}/bd-1", _reading(1009))  # ... and of no other city
        bd.publish(f"{air}/aq-1", _reading(1010))  # city B's device cannot publish for city A
        expected = {**counts, "aq-1": counts["aq-1"] + 1, "aq-old": counts["aq-old"] + 1}
        expected |= {"bd-1": counts["bd-1"] + 1, "aq-2": counts["aq-2"] + 1, "tc-1": counts["tc-1"] + 1}
        wait_until(lambda: {s: platform.readings(s) for s in SENSORS} == expected)
        time.sleep(1.0)  # room for anything refused to arrive after all, if the broker had let it through
    finally:
        for client in (one, old, bd, gateway):
            client.close()
    assert {s: platform.readings(s) for s in SENSORS} == expected
    assert platform.rejected() == rejected  # refused by the broker: not even a rejection reached the ingester
    values = rows(platform.database_url, "SELECT value FROM readings WHERE value BETWEEN 1001 AND 1010")
    assert sorted(v for (v,) in values) == [1001.0, 1006.0, 1007.0, 1008.0]  # what may arrive, and nothing else


def test_a_device_takes_no_share_of_anyones_readings(platform: Platform) -> None:
    before = platform.readings("aq-2")
    thief = _device(platform, "aq-1")
    two = _device(platform, "aq-2", v5=False)
    try:
        granted = thief.subscribe(
            "$share/ingest/livinglab/v1/+/+/+",
            "$share/ingest/livinglab/v1/#",
            "$share/other/livinglab/v1/jakarta/air/aq-2",
            "#",
            "livinglab/v1/+/+/+",
            "livinglab/v1/jakarta/air/aq-1/errors",
        )
        base = time.time() - 60
        for i in range(100):
            two.publish("livinglab/v1/jakarta/air/aq-2", _reading(i, base + i * 0.1))
        wait_until(lambda: platform.readings("aq-2") == before + 100)
        time.sleep(0.5)
    finally:
        thief.close()
        two.close()
    assert [r.is_failure for r in granted] == [True] * 5 + [False]  # only its own /errors topic
    assert platform.readings("aq-2") == before + 100
    assert [t for t, _ in thief.received if not t.endswith("/aq-1/errors")] == []


def test_no_credential_takes_the_ingesters_or_another_devices_client_id(platform: Platform) -> None:
    before = platform.readings("aq-2")
    link = platform.ingester.link
    assert link is not None
    connections = link.connections
    two = _device(platform, "aq-2")
    attempts = []
    try:
        base = time.time() - 120
        for i in range(200):
            two.publish("livinglab/v1/jakarta/air/aq-2", _reading(i, base + i * 0.1))
            if i % 25 == 0:  # takeovers spread over the run, as in the finding
                for user, client_id in (("aq-1", INGESTER_ID), ("aq-1", "aq-2"), ("gw-jakarta", INGESTER_ID)):
                    attempts.append(_refused(platform.broker.port, user, platform.passwords[user], client_id=client_id))
                attempts.append(_refused(platform.broker.port, None, None, client_id=INGESTER_ID))
        wait_until(lambda: platform.readings("aq-2") == before + 200)
    finally:
        two.close()
    assert attempts == [True] * 32  # every attempt refused at CONNECT
    assert link.connections == connections  # the ingester was never disconnected
    assert two.disconnects[:-1] == []  # nor the device whose id was tried (only its own close at the end)
    assert platform.readings("aq-2") == before + 200


def test_retained_publishes_are_refused(platform: Platform) -> None:
    before = platform.readings("aq-1")
    one = _device(platform, "aq-1")
    try:
        one.client.publish("livinglab/v1/jakarta/air/aq-1", _reading(42), qos=1, retain=True)  # never acknowledged
        wait_until(lambda: bool(one.disconnects))
    finally:
        one.close()
    assert str(one.disconnects[0]) == "Retain not supported"
    # A new subscription is handed no retained copy (what a new ingester would store again).
    listener = Client(platform.broker.services_port, "ingest", "ingest-pw", client_id="retained-probe")
    try:
        assert not listener.subscribe("livinglab/v1/jakarta/air/aq-1")[0].is_failure
        time.sleep(0.5)
    finally:
        listener.close()
    assert listener.received == []
    assert platform.readings("aq-1") == before


def test_the_listeners_keep_services_and_devices_apart(platform: Platform) -> None:
    services, devices = platform.broker.services_port, platform.broker.port
    assert _refused(services, "aq-1", platform.passwords["aq-1"])
    assert _refused(services, "gw-jakarta", platform.passwords["gw-jakarta"])
    assert _refused(devices, "ingest", "ingest-pw")
    assert _refused(devices, "aq-1", "not-the-password")
    assert _refused(devices, None, None, client_id="anonymous")
    assert not _refused(devices, "aq-1", platform.passwords["aq-1"])  # the control: the right listener works


def test_credentials_are_listed_changed_and_removed(platform: Platform) -> None:
    listing = _livinglab("mqtt", "list", env=platform.env)
    lines = {line.split("\t")[0]: line for line in listing.splitlines()}
    assert "publishClientSend livinglab/v1/jakarta/air/aq-1;" in lines["aq-1"]
    assert "client id aq-1" in lines["aq-1"]
    assert "publishClientSend livinglab/v1/jakarta/+/+" in lines["gw-jakarta"]
    with connected(MqttUrl.parse(platform.env["LIVINGLAB_MQTT_ADMIN_URL"])) as control:
        set_password(control, "tc-1", "rotated")
        assert _refused(platform.broker.port, "tc-1", platform.passwords["tc-1"])
        assert not _refused(platform.broker.port, "tc-1", "rotated")
        remove_client(control, "tc-1")
        assert _refused(platform.broker.port, "tc-1", "rotated")
        with pytest.raises(BrokerAccessError, match="service account"):
            issue_device(control, prefix="p", sensor_id="ingest", city="x", kind=Kind.AIR, password="p")
        with pytest.raises(BrokerAccessError, match="already has a client"):
            issue_device(control, prefix="p", sensor_id="aq-2", city="x", kind=Kind.AIR, password="p")
