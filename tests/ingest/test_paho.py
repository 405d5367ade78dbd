"""The paho client's fast paths, on crafted packets: the lean PUBLISH handler and the batched PUBACKs."""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest._paho import IngestClient


def _client(protocol: int) -> tuple[IngestClient, list[tuple[bytes, bytes, int, int, bool]]]:
    client = IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=True)
    seen: list[tuple[bytes, bytes, int, int, bool]] = []
    client.set_publish_sink(lambda *args: seen.append(args))
    return client, seen


def _publish(
    topic: bytes, payload: bytes, *, qos: int, mid: int, properties: bytes | None, retain: bool = False
) -> tuple[int, bytearray]:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if properties is not None:
        body += bytes([len(properties)]) + properties
    return 0x30 | (qos << 1) | int(retain), bytearray(body + payload)


@pytest.mark.parametrize(
    ("protocol", "properties"),
    [(mqtt.MQTTv311, None), (mqtt.MQTTv5, b""), (mqtt.MQTTv5, b"\x01\x01\x03\x00\x04json")],
)
@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("retain", [False, True])
def test_publish_packets_reach_the_sink(protocol: int, properties: bytes | None, qos: int, retain: bool) -> None:
    client, seen = _client(protocol)
    command, packet = _publish(
        b"livinglab/v1/c/air/s", b'{"ts": 1}', qos=qos, mid=513, properties=properties, retain=retain
    )
    client._in_packet = {"command": command, "packet": packet}
    assert client._handle_publish() == mqtt.MQTT_ERR_SUCCESS
    assert seen == [(b"livinglab/v1/c/air/s", b'{"ts": 1}', 513 if qos else 0, qos, retain)]


def test_a_truncated_publish_is_a_protocol_error_not_a_crash() -> None:
    client, seen = _client(mqtt.MQTTv5)
    command, packet = _publish(b"a/b", b"", qos=1, mid=7, properties=None)
    client._in_packet = {"command": command, "packet": packet[:5]}
    assert client._handle_publish() == mqtt.MQTT_ERR_PROTOCOL
    assert seen == []


def test_pubacks_of_a_batch_are_queued_as_one_buffer_in_order() -> None:
    client, _ = _client(mqtt.MQTTv5)
    client.queue_pubacks([1, 65535, 300])
    packets = list(client._out_packet)
    assert len(packets) == 1
    assert packets[0]["packet"] == b"\x40\x02\x00\x01" + b"\x40\x02\xff\xff" + b"\x40\x02\x01\x2c"
