"""The shipped Mosquitto configuration (deploy/mosquitto): tuning shared with the test broker, the ACL, and the bridge
from The Things Stack, checked by what actually arrives on a real broker run from the shipped files with passwords
made by the shipped tool."""

from __future__ import annotations

import json
import os
import shutil
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
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import air, register

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

    def __init__(
        self, broker: MosquittoBroker, user: str | None, password: str | None = None, *, tls_ca: Path | None = None
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.refused: Any = None
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}")
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
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

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

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


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (CA, certificate, key)."""
    ca, ca_key, cert, key, request = (directory / n for n in ("ca.pem", "ca.key", "cert.pem", "cert.key", "cert.csr"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl = ["openssl", "req", *ec]
    subprocess.run([*openssl, "-x509", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test CA"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        [*openssl, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"], check=True, capture_output=True
    )
    names = directory / "names.ext"
    names.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", names], check=True, capture_output=True)  # fmt: skip
    return ca, cert, key


class ThingsStackBroker(MosquittoBroker):
    """A Mosquitto playing The Things Stack's MQTT server: TLS on loopback, one application's credentials."""

    def __init__(self, state_dir: Path, certificates: tuple[Path, Path, Path], password_file: Path) -> None:
        super().__init__(state_dir, password_file=password_file, persistence=False)
        self.certificates = certificates

    def write_config(self) -> Path:
        path = super().write_config()
        _, cert, key = self.certificates
        with path.open("a") as config:  # the listener's TLS (the only listener, so these options are its own)
            config.write(f"certfile {cert}\nkeyfile {key}\n")
        return path


def test_the_things_stack_bridge_brings_uplinks_to_the_ingester(
    shipped_broker: ShippedBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    """deploy/mosquitto/bridge-tts.conf, included by the shipped configuration as docs/devices.md says, connects a
    real Mosquitto over TLS to a second one playing The Things Stack; the documented uplink published there at QoS 0
    is stored, and one published while the ingester is down waits for it (upgrade_outgoing_qos)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    application, api_key = "city-sensors@ttn", "NNSXS.TEST-KEY"
    certificates = _certificates(tmp_path)
    passwd = tmp_path / "tts-passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, application, api_key], check=True, capture_output=True)
    tts = ThingsStackBroker(tmp_path / "tts", certificates, passwd)
    tts.start()
    local = {
        "address": f"{LOOPBACK}:{tts.port}",
        "bridge_capath": f"bridge_cafile {certificates[0]}",
        "remote_username": application,
        "remote_password": api_key,
        "topic": f"v3/{application}/devices/+/up in 0",
    }
    bridge = []
    for line in (DEPLOY / "bridge-tts.conf").read_text().splitlines():
        name = line.split(None, 1)[0] if line.strip() and not line.startswith("#") else ""
        value = local.get(name)
        bridge.append(line if value is None else value if value.startswith("bridge_") else f"{name} {value}")
    included = shipped_broker.state_dir / "conf.d"
    included.mkdir()
    (included / "bridge-tts.conf").write_text("\n".join(bridge) + "\n")
    shipped_config = shipped_broker.write_config

    def with_bridge() -> Path:  # the shipped configuration, including the directory, as docs/devices.md says
        path = shipped_config()
        with path.open("a") as config:
            config.write(f"include_dir {included}\n")
        return path

    shipped_broker.write_config = with_bridge  # type: ignore[method-assign]
    shipped_broker.restart()

    register(fresh_database_url, air("tts-1", dev_eui="0004A30B001C0530", field_map={"temperature": "temp"}))
    settings = {
        "database_url": fresh_database_url,
        "mqtt_url": f"mqtt://ingest:{PASSWORDS['ingest']}@{LOOPBACK}:{shipped_broker.port}",
        "shared_group": "ingest",
        "client_id": "ingest-bridge-test",
        "max_lateness_s": 20 * 365 * 86400.0,  # the documented uplink is from 2020
    }
    network_server = Client(tts, application, api_key, tls_ca=certificates[0])
    try:
        topic = f"v3/{application}/devices/dev1/up"
        documented = (Path(__file__).parent / "fixtures" / "lorawan" / "tts-up.json").read_bytes()
        with ingesting(**settings):
            # The bridge connects in the background; QoS 0 messages sent before it has are gone, as they would be.
            wait_until(lambda: network_server.publish(topic, documented, qos=0)
                       or scalar(fresh_database_url, "SELECT count(*) FROM readings"), timeout_s=30)  # fmt: skip
        later = documented.replace(b"2020-02-12T15:15:45.789585559Z", b"2020-02-12T15:25:45.789585559Z")
        network_server.publish(topic, later.replace(b'"f_cnt" : 1', b'"f_cnt" : 3'), qos=0)
        time.sleep(1.0)  # through the bridge, into the ingester's queue at the broker
        with ingesting(**settings):
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 2)
    finally:
        network_server.close()
        tts.stop()
    stored = [
        (ts.isoformat(), value) for ts, value in rows(fresh_database_url, "SELECT ts, value FROM readings ORDER BY ts")
    ]
    assert stored == [("2020-02-12T15:15:45.789585+00:00", 1.0), ("2020-02-12T15:25:45.789585+00:00", 1.0)]
    # The second uplink's frame counter says one uplink between them never arrived.
    assert scalar(fresh_database_url, "SELECT sum(frames_missed) FROM ingest_counters") == 1
