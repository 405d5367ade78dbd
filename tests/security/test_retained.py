"""Retained readings are never stored twice: a broker that keeps retained messages hands a copy to every new
subscription, and the ingester refuses every message delivered with the retain flag (`retained_message`).

The shipped broker configuration refuses retained publishes altogether (tests/security/test_broker_access.py); here
the broker allows them, as a broker not configured by the platform would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from livinglab.embedded import LOOPBACK, MosquittoBroker
from livinglab.launch import started
from tests.support.ingest import ingesting, mqtt_client
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import register

pytestmark = pytest.mark.integration


@pytest.fixture
def retaining_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    with started(MosquittoBroker(tmp_path / "mosquitto", retain_available=True)) as (broker,):
        yield broker


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = mqtt_client("aq-1")
    client.connect(LOOPBACK, port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_retained_relative_time_reading_is_stored_once(
    retaining_broker: MosquittoBroker, fresh_database_url: str
) -> None:
    register(fresh_database_url, "aq-1")
    topic = "livinglab/v1/jakarta/air/aq-1"
    # A SenML reading with a relative time (bt + t below 2**28): stored again it would land at a new time.
    payload = json.dumps([{"n": "pm25", "u": "ug/m3", "v": 21.5, "t": -5}]).encode()
    common = {"database_url": fresh_database_url, "mqtt_url": retaining_broker.url}
    with ingesting(client_id="ingest-first", mqtt_protocol="5", **common):
        _publish_retained(retaining_broker.port, topic, payload)
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 1)
        # A new subscription (a replica added, a client id changed) is handed the retained copy.
        with ingesting(client_id="ingest-second", mqtt_protocol="3.1.1", **common) as second:
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 1)
            wait_until(lambda: second.batches >= 1)
            counted = second.metrics.rejected.labels("retained_message")._value.get()
    assert scalar(fresh_database_url, "SELECT count(*) FROM readings") == 1
    assert rows(fresh_database_url, "SELECT reason, sensor_id, payload FROM rejected") == [
        ("retained_message", "aq-1", payload)
    ]
    assert counted == 1
    wait_until(lambda: scalar(fresh_database_url, "SELECT coalesce(sum(rejected), 0) FROM ingest_counters") == 1)
    assert scalar(fresh_database_url, "SELECT sum(accepted) FROM ingest_counters") == 1


def test_the_lean_receive_path_and_pahos_own_path_carry_the_flag() -> None:
    # Both receive paths of the ingester build a Message with `retained`; paho's MQTTMessage path is the fallback.
    from ingest.batch import Message
    from ingest.broker import BrokerLink
    from ingest.inbox import Inbox
    from livinglab.settings import MqttUrl

    inbox = Inbox(max_messages=10, max_bytes=1 << 20, max_qos0_bytes=1 << 20)
    link = BrokerLink(MqttUrl(LOOPBACK, 1), protocol="5", client_id="t", prefix="livinglab/v1", inbox=inbox)
    link._on_publish(b"livinglab/v1/jakarta/air/aq-1", b"{}", 1, 1, True)
    message = mqtt.MQTTMessage(mid=2, topic=b"livinglab/v1/jakarta/air/aq-1")
    message.retain = True
    message.qos = 1
    link._on_message(link.client, None, message)
    taken = inbox.take(max_messages=10, max_bytes=1 << 20, wait_s=0, linger_s=0)
    assert [(m.mid, m.retained) for m in taken] == [(1, True), (2, True)]
    assert all(isinstance(m, Message) for m in taken)
