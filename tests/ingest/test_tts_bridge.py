"""deploy/mosquitto/bridge-tts.conf in a real Mosquitto: the shipped configuration including it as docs/devices.md
says, bridged over TLS to a second Mosquitto playing The Things Stack's MQTT server (one application's credentials,
MQTT 3.1.1, QoS 0), everything on loopback. The documented uplink published there reaches the ingester on the
services listener and is stored; one published while the ingester is down waits for it (upgrade_outgoing_qos)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.embedded import LOOPBACK, MosquittoBroker
from tests.support.brokers import DEPLOY, ShippedBroker
from tests.support.ingest import ingesting
from tests.support.lorawan import fixture
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

APPLICATION, API_KEY = "city-sensors@ttn", "NNSXS.TEST-KEY"


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (CA, certificate, key)."""
    ca, ca_key, cert, key, request = (directory / n for n in ("ca.pem", "ca.key", "cert.pem", "cert.key", "cert.csr"))
    openssl = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subject_ca, subject = ["-subj", "/CN=test CA"], ["-subj", "/CN=127.0.0.1"]
    subprocess.run([*openssl, "-x509", "-keyout", ca_key, "-out", ca, "-days", "2", *subject_ca], check=True)
    subprocess.run([*openssl, "-keyout", key, "-out", request, *subject], check=True, capture_output=True)
    names = directory / "names.ext"
    names.write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", "-extfile", names]
    subprocess.run(["openssl", "x509", "-req", "-in", request, "-out", cert, *sign], check=True, capture_output=True)
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


class BridgedBroker(ShippedBroker):
    """The shipped configuration with an `include_dir` holding bridge-tts.conf, made local to this test."""

    def __init__(self, state_dir: Path, tts: ThingsStackBroker) -> None:
        super().__init__(state_dir)
        self.tts = tts

    def write_config(self) -> Path:
        path = super().write_config()
        local = {
            "address": f"address {LOOPBACK}:{self.tts.port}",
            "bridge_capath": f"bridge_cafile {self.tts.certificates[0]}",
            "remote_username": f"remote_username {APPLICATION}",
            "remote_password": f"remote_password {API_KEY}",
            "topic": f"topic v3/{APPLICATION}/devices/+/up in 0",
        }
        bridge = []
        for line in (DEPLOY / "bridge-tts.conf").read_text().splitlines():
            name = line.split(None, 1)[0] if line.strip() and not line.startswith("#") else ""
            bridge.append(local.get(name, line))
        included = self.state_dir / "conf.d"
        included.mkdir(exist_ok=True)
        (included / "bridge-tts.conf").write_text("\n".join(bridge) + "\n")
        with path.open("a") as config:
            config.write(f"include_dir {included}\n")
        return path


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[BridgedBroker, ThingsStackBroker]]:
    if shutil.which("openssl") is None or not MosquittoBroker.available():
        pytest.skip("needs openssl and mosquitto")
    passwd = tmp_path / "tts-passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, APPLICATION, API_KEY], check=True, capture_output=True)
    tts = ThingsStackBroker(tmp_path / "tts", _certificates(tmp_path), passwd)
    platform = BridgedBroker(tmp_path / "platform", tts)
    platform.state_dir.mkdir(parents=True)
    subprocess.run(["mosquitto_passwd", "-c", "-b", platform.services_passwd, "ingest", "ingest-pw"], check=True)
    init = [sys.executable, "-m", "livinglab", "mqtt", "init", str(platform.dynsec)]
    subprocess.run(init, check=True, capture_output=True, timeout=60)
    tts.start()
    try:
        platform.start()
        try:
            yield platform, tts
        finally:
            platform.stop()
    finally:
        tts.stop()


def test_the_things_stack_bridge_brings_uplinks_to_the_ingester(
    brokers: tuple[BridgedBroker, ThingsStackBroker], fresh_database_url: str
) -> None:
    platform, tts = brokers
    register(fresh_database_url, air("tts-1", dev_eui="0004A30B001C0530", field_map={"temperature": "temp"}))
    settings = {
        "database_url": fresh_database_url,
        "mqtt_url": f"mqtt://ingest:ingest-pw@{LOOPBACK}:{platform.services_port}",
        "shared_group": "ingest",
        "client_id": "ingest-bridge-test",
        "max_lateness_s": 20 * 365 * 86400.0,  # the documented uplink is from 2020
    }
    network_server = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tts-application-server")
    network_server.username_pw_set(APPLICATION, API_KEY)
    network_server.tls_set(ca_certs=str(tts.certificates[0]))
    network_server.connect(LOOPBACK, tts.port)
    network_server.loop_start()
    topic = f"v3/{APPLICATION}/devices/dev1/up"
    documented = fixture("tts-up.json")

    def publish(payload: bytes) -> None:
        network_server.publish(topic, payload, qos=0).wait_for_publish(10)

    try:
        with ingesting(**settings):
            # The bridge connects in the background; QoS 0 uplinks published before it has are gone, as they would be.
            stored = lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings")  # noqa: E731
            wait_until(lambda: publish(documented) or stored(), timeout_s=30)
        later = documented.replace(b"2020-02-12T15:15:45.789585559Z", b"2020-02-12T15:25:45.789585559Z")
        publish(later.replace(b'"f_cnt" : 1', b'"f_cnt" : 3'))
        time.sleep(1.0)  # through the bridge, into the ingester's queue at the broker
        with ingesting(**settings):
            wait_until(lambda: stored() == 2)
    finally:
        network_server.disconnect()
        network_server.loop_stop()
    readings = [(ts.isoformat(), v) for ts, v in rows(fresh_database_url, "SELECT ts, value FROM readings ORDER BY ts")]
    assert readings == [("2020-02-12T15:15:45.789585+00:00", 1.0), ("2020-02-12T15:25:45.789585+00:00", 1.0)]
    # The second uplink's frame counter says one uplink between them never arrived.
    assert scalar(fresh_database_url, "SELECT sum(frames_missed) FROM ingest_counters") == 1
