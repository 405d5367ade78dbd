"""MQTT and email channels delivered by a real deliverer process: through a real Mosquitto (QoS 1, not retained,
MQTT 5 user property `delivery_id`) and to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import psycopg
import pytest
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.embedded import LOOPBACK, MosquittoBroker, free_port
from livinglab.launch import RoleProcess, started
from notify._mqtt import AckedClient
from tests.support.brokers import DEPLOY
from tests.support.notify import create_channel, queue_events, wait_for_delivery, wait_until_settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _deliverer(url: str, log_dir: Path, **settings: str) -> RoleProcess:
    env = {
        "LIVINGLAB_DATABASE_URL": url,
        "LIVINGLAB_NOTIFY_WORKER_ID": "notify-channels",
        "LIVINGLAB_RETRY_FIRST_S": "0.5",
        "LIVINGLAB_RETRY_MAX_S": "2",
        **settings,
    }
    return RoleProcess("notify", env, log_dir)


# ---- MQTT --------------------------------------------------------------------------------------------------------


def _subscriber(
    broker: MosquittoBroker, topic: str, *, login: tuple[str, str] | None = None
) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{free_port()}", protocol=mqtt.MQTTv5)
    if login is not None:
        client.username_pw_set(*login)
    client.on_message = lambda _c, _u, message: received.put(message)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert subscribed.wait(10), "the subscriber did not subscribe"
    return client, received


def test_an_mqtt_channel_publishes_qos_1_with_the_delivery_id(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str, tmp_path: Path
) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        channel = create_channel(conn, "mqtt", {"topic": f"{topic_prefix}/{{city}}/alarms"})
    client, received = _subscriber(mqtt_broker, f"{topic_prefix}/+/alarms")
    try:
        process = _deliverer(fresh_database_url, tmp_path, LIVINGLAB_MQTT_URL=mqtt_broker.url)
        with started(process):
            ids = queue_events(fresh_database_url, [channel], 3)
            rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
            messages = [received.get(timeout=10) for _ in ids]
    finally:
        client.loop_stop()
        client.disconnect()
    assert {r["status"] for r in rows.values()} == {"delivered"}, process.log_tail()
    by_id = {}
    for message in messages:
        assert message.topic == f"{topic_prefix}/jakarta/alarms"
        assert message.qos == 1
        assert not message.retain
        properties = dict(message.properties.UserProperty)  # type: ignore[union-attr]
        body = json.loads(message.payload)
        assert properties["delivery_id"] == body["delivery_id"]
        assert body["event"] == "raised"
        assert body["alarm"]["city"] == "jakarta"
        by_id[body["delivery_id"]] = body
    assert sorted(by_id) == sorted(ids)


def test_an_mqtt_channel_without_a_broker_keeps_its_deliveries_pending(fresh_database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        channel = create_channel(conn, "mqtt", {"topic": "alarms/{city}"})
    # A port nothing listens on: each attempt is refused and retried.
    with started(_deliverer(fresh_database_url, tmp_path, LIVINGLAB_MQTT_URL=f"mqtt://{LOOPBACK}:{free_port()}")):
        ids = queue_events(fresh_database_url, [channel], 1)
        row = wait_for_delivery(fresh_database_url, ids[0], lambda r: r["attempts"] >= 2)
    status, attempts, last_error = row["status"], row["attempts"], row["last_error"]
    assert (status, attempts >= 2) == ("pending", True)
    assert "cannot connect to the broker" in last_error


@pytest.fixture
def guarded_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto with the services listener's access rules (deploy/mosquitto/services.acl) and two accounts: the
    deliverer's (`notify`) and a subscriber that reads everything (`watcher`)."""
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    state = tmp_path / "mosquitto"
    state.mkdir()
    passwords = state / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "notify", "notify-pw"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "watcher", "watcher-pw"], check=True)
    acl = state / "acl"
    acl.write_text((DEPLOY / "services.acl").read_text() + "\nuser watcher\ntopic read #\n")
    broker = MosquittoBroker(state, password_file=passwords, acl_file=acl)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_publish_the_broker_refuses_is_not_delivered(
    fresh_database_url: str, guarded_broker: MosquittoBroker, tmp_path: Path
) -> None:
    # The account may write livinglab/v1/{city}/alarms only: Mosquitto answers the other topic's PUBLISH with a
    # PUBACK of reason code 0x87 (MQTT 5), which must fail the attempt, not mark the delivery delivered.
    with psycopg.connect(fresh_database_url) as conn:
        allowed = create_channel(conn, "mqtt", {"topic": "livinglab/v1/{city}/alarms"})
        refused = create_channel(conn, "mqtt", {"topic": "elsewhere/{city}/alarms"})
    client, received = _subscriber(guarded_broker, "#", login=("watcher", "watcher-pw"))
    url = f"mqtt://notify:notify-pw@{LOOPBACK}:{guarded_broker.port}"
    try:
        with started(_deliverer(fresh_database_url, tmp_path, LIVINGLAB_MQTT_URL=url)) as (process,):
            # Five alarms, each with a delivery on both channels, published concurrently on one connection: each
            # PUBACK's verdict must reach its own delivery.
            ids = queue_events(fresh_database_url, [refused, allowed], 5)
            refused_ids, allowed_ids = ids[0::2], ids[1::2]
            delivered = wait_until_settled(fresh_database_url, allowed_ids, timeout_s=30)
            rows = [wait_for_delivery(fresh_database_url, i, lambda r: r["attempts"] >= 2) for i in refused_ids]
            messages = [received.get(timeout=10) for _ in allowed_ids]
    finally:
        client.loop_stop()
        client.disconnect()
    assert {r["status"] for r in delivered.values()} == {"delivered"}, process.log_tail()
    assert {m.topic for m in messages} == {"livinglab/v1/jakarta/alarms"}
    assert sorted(json.loads(m.payload)["delivery_id"] for m in messages) == sorted(allowed_ids)
    assert received.empty(), "a refused publish reached a subscriber"
    refusal = "the broker refused the publish to 'elsewhere/jakarta/alarms': Not authorized (0x87)"
    assert [(row["status"], row["last_error"]) for row in rows] == [("pending", refusal)] * len(rows)


def test_an_aiomqtt_that_hears_pubacks_elsewhere_fails_when_the_client_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a release of aiomqtt that moved its PUBACK handling would look like to AckedClient.
    made = aiomqtt.Client.__init__

    def moved(self: aiomqtt.Client, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self._client.on_publish = lambda *_args: None

    async def make() -> None:
        AckedClient(LOOPBACK, free_port())  # aiomqtt makes its client inside a running event loop

    monkeypatch.setattr(aiomqtt.Client, "__init__", moved)
    with pytest.raises(RuntimeError, match="no longer hears PUBACKs"):
        asyncio.run(make())


# ---- email -------------------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def test_an_email_channel_sends_plain_text_with_the_facts(
    fresh_database_url: str, smtp_server: tuple[int, Mailbox], tmp_path: Path
) -> None:
    port, mailbox = smtp_server
    with psycopg.connect(fresh_database_url) as conn:
        channel = create_channel(conn, "email", {"to": ["ops@example.org", "duty@example.org"]})
    settings = {
        "LIVINGLAB_SMTP_HOST": LOOPBACK,
        "LIVINGLAB_SMTP_PORT": str(port),
        "LIVINGLAB_SMTP_STARTTLS": "false",
        "LIVINGLAB_SMTP_FROM": "alarms@livinglab.example.org",
    }
    with started(_deliverer(fresh_database_url, tmp_path, **settings)) as (process,):
        ids = queue_events(fresh_database_url, [channel], 1)
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
    assert rows[ids[0]]["status"] == "delivered", process.log_tail()
    assert len(mailbox.messages) == 1
    recipients, message = mailbox.messages[0]
    assert recipients == ["ops@example.org", "duty@example.org"]
    assert message["From"] == "alarms@livinglab.example.org"
    assert message["X-Livinglab-Delivery"] == ids[0]
    assert message.get_content_type() == "text/plain"
    assert "warning alarm raised: ispu-high" in message["Subject"]
    text = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Alarm raised." in text
    assert "city: jakarta" in text
    assert "value: 101" in text
    assert f"delivery_id: {ids[0]}" in text


def test_an_email_channel_without_smtp_settings_says_why(fresh_database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        channel = create_channel(conn, "email", {"to": ["ops@example.org"]})
    with started(_deliverer(fresh_database_url, tmp_path)):
        ids = queue_events(fresh_database_url, [channel], 1)
        row = wait_for_delivery(fresh_database_url, ids[0], lambda r: r["last_error"] is not None)
    assert (row["status"], row["last_error"]) == ("pending", "no SMTP server: LIVINGLAB_SMTP_HOST is not set")
