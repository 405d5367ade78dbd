"""The paho hooks of `ingest._paho` against paho's own paths, on the same packets from a scripted broker.

The broker is a loopback TCP server that speaks just enough MQTT (CONNACK, SUBACK) and then writes crafted PUBLISH
packets in pieces of awkward sizes: QoS 0 and 1, RETAIN and DUP, MQTT 3.1.1 and 5, MQTT 5 properties of 0, 127,
128 (a two-byte length) and 16,384 bytes (a three-byte length), topic aliases (a topic that sets one, an empty
topic that uses one), a topic that is not UTF-8, empty and large payloads. A `BrokerLink` with every hook on, with
each one off and with none receives them into its inbox; what the ingester receives (topic, payload, packet id,
QoS, retain) must be the same for all and what the broker sent, and acknowledging them must put the same PUBACK
bytes on the wire.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ingest._paho import PAHO_HOOKS, READS_PER_WAKEUP, IngestClient, check_paho
from ingest.batch import Message
from ingest.broker import BrokerLink, Protocol
from ingest.inbox import Inbox
from livinglab.errors import ConfigurationError
from livinglab.mqtt_packets import remaining_length
from livinglab.settings import MqttUrl
from simulators.wire import WireError, WirePublisher

PREFIX = "livinglab/v1"
TOPIC = b"livinglab/v1/c/air/s1"
_TOPIC_ALIAS = 0x23
_USER_PROPERTY = 0x26
_CONTENT_TYPE = 0x03


def _string(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _properties_of(size: int) -> bytes:
    """MQTT 5 PUBLISH properties of exactly `size` bytes: one user property padded to fit (size 0: none)."""
    if size == 0:
        return b""
    prop = bytes([_USER_PROPERTY]) + _string(b"k") + _string(b"v" * (size - 6))
    assert len(prop) == size
    return prop


@dataclass(frozen=True)
class Publish:
    topic: bytes
    payload: bytes
    qos: int = 1
    retain: bool = False
    dup: bool = False
    properties: bytes = b""

    def encode(self, mid: int, v5: bool) -> bytes:
        body = _string(self.topic) + (struct.pack("!H", mid) if self.qos else b"")
        if v5:
            body += remaining_length(len(self.properties)) + self.properties
        body += self.payload
        header = 0x30 | (0x08 if self.dup else 0) | (self.qos << 1) | (0x01 if self.retain else 0)
        return bytes([header]) + remaining_length(len(body)) + body


def _packets(v5: bool) -> list[Publish]:
    reading = b'{"ts": 1795852800, "pm25": 41.3}'
    packets = [
        Publish(TOPIC, reading, qos=0),
        Publish(TOPIC, reading, qos=1),
        Publish(TOPIC, reading, qos=1, retain=True),
        Publish(TOPIC, reading, qos=0, retain=True),
        Publish(TOPIC, reading, qos=1, dup=True),
        Publish(TOPIC, b"", qos=1),
        Publish(TOPIC, bytes(range(256)) * 400, qos=1),  # 102,400 bytes: a three-byte remaining length
        Publish(b"livinglab/v1/c/air/\xff\xfe", reading, qos=1),  # not UTF-8
    ]
    if v5:
        packets += [
            Publish(TOPIC, reading, qos=q, properties=_properties_of(n)) for n in (0, 127, 128, 16384) for q in (0, 1)
        ]
        packets += [
            Publish(TOPIC, reading, properties=bytes([_CONTENT_TYPE]) + _string(b"application/json")),
            Publish(TOPIC, reading, properties=bytes([_TOPIC_ALIAS]) + struct.pack("!H", 1)),  # sets alias 1
            Publish(b"", reading, properties=bytes([_TOPIC_ALIAS]) + struct.pack("!H", 1)),  # uses it
            Publish(b"", reading, qos=0, retain=True, properties=bytes([_TOPIC_ALIAS]) + struct.pack("!H", 1)),
        ]
    return packets


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """One MQTT packet from the connection: (first header byte, body)."""
    exactly = WirePublisher._read_exactly
    header = exactly(conn, 1)[0]
    length, shift, byte = 0, 0, 0x80
    while byte & 0x80:
        byte = exactly(conn, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
    return header, exactly(conn, length)


class ScriptedBroker:
    """Accepts one client, answers its CONNECT and SUBSCRIBE, then writes `wire` in pieces of awkward sizes and
    collects what the client sends back."""

    def __init__(self, wire: bytes, *, v5: bool) -> None:
        self.wire = wire
        self.v5 = v5
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(10)
        self.port = self.server.getsockname()[1]
        self.received: list[tuple[int, bytes]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(10)
                header, _ = _read_packet(conn)
                assert header >> 4 == 1, "expected CONNECT"
                conn.sendall(b"\x20\x03\x00\x00\x00" if self.v5 else b"\x20\x02\x00\x00")
                header, body = _read_packet(conn)
                assert header >> 4 == 8, "expected SUBSCRIBE"
                conn.sendall((b"\x90\x04" + body[:2] + b"\x00\x01") if self.v5 else (b"\x90\x03" + body[:2] + b"\x01"))
                pos, sizes = 0, itertools.cycle([1, 2, 3, 5, 7, 64, 1000, 4096, 70000])
                while pos < len(self.wire):  # pieces that split headers, lengths and bodies
                    size = next(sizes)
                    conn.sendall(self.wire[pos : pos + size])
                    pos += size
                    time.sleep(0.001)
                while True:
                    header, body = _read_packet(conn)
                    self.received.append((header, body))
                    if header >> 4 == 14:  # DISCONNECT
                        return
        except (WireError, OSError):  # the client closed the connection
            return
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def close(self) -> None:
        self.server.close()
        self._thread.join(timeout=10)


def _receive(protocol: Protocol, packets: list[Publish], hooks: frozenset[str]) -> tuple[list[Message], bytes]:
    """What a BrokerLink with `hooks` puts in its inbox, and the PUBACK bytes acknowledging it puts on the wire."""
    v5 = protocol == "5"
    wire = b"".join(p.encode(mid, v5) for mid, p in enumerate(packets, start=65530 - len(packets)))
    broker = ScriptedBroker(wire, v5=v5)
    inbox = Inbox(max_messages=10_000, max_bytes=1 << 30, max_qos0_bytes=1 << 30)
    link = BrokerLink(
        MqttUrl.parse(f"mqtt://127.0.0.1:{broker.port}"),
        protocol=protocol,
        client_id="differential",
        prefix=PREFIX,
        inbox=inbox,
        paho_hooks=hooks,
    )
    link.start()
    try:
        messages: list[Message] = []
        deadline = time.monotonic() + 20
        while len(messages) < len(packets) and time.monotonic() < deadline:
            messages += inbox.take(max_messages=1000, max_bytes=1 << 30, wait_s=0.1, linger_s=0)
        assert len(messages) == len(packets), f"received {len(messages)} of {len(packets)} with hooks {sorted(hooks)}"
        acknowledged = link.acknowledge(messages)
        assert acknowledged == sum(1 for p in packets if p.qos == 1)
        deadline = time.monotonic() + 10
        while sum(1 for h, _ in broker.received if h >> 4 == 4) < acknowledged and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        link.stop()
        broker.close()
    assert broker.error is None, broker.error
    pubacks = b"".join(bytes([h]) + remaining_length(len(b)) + b for h, b in broker.received if h >> 4 == 4)
    return messages, pubacks


def _seen(messages: list[Message]) -> list[tuple[str, bytes, int, int, bool]]:
    return [(m.topic, m.payload, m.mid, m.qos, m.retained) for m in messages]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_the_hooks_receive_and_acknowledge_exactly_what_paho_does(protocol: Protocol) -> None:
    packets = _packets(protocol == "5")
    first_mid = 65530 - len(packets)
    sent = [
        (p.topic.decode("utf-8", "backslashreplace"), p.payload, first_mid + i if p.qos else 0, p.qos, p.retain)
        for i, p in enumerate(packets)
    ]
    paho_own, paho_acks = _receive(protocol, packets, frozenset())
    assert _seen(paho_own) == sent
    expected_acks = b"".join(b"\x40\x02" + struct.pack("!H", first_mid + i) for i, p in enumerate(packets) if p.qos)
    assert paho_acks == expected_acks
    for hooks in (PAHO_HOOKS, *(PAHO_HOOKS - {hook} for hook in sorted(PAHO_HOOKS))):
        messages, acks = _receive(protocol, packets, hooks)
        assert _seen(messages) == sent, f"hooks {sorted(hooks)}"
        assert acks == paho_acks, f"hooks {sorted(hooks)}"


def test_a_truncated_publish_is_a_protocol_error_not_a_crash() -> None:
    client = IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    seen: list[tuple[bytes, bytes, int, int, bool]] = []
    client.set_publish_sink(lambda *args: seen.append(args))
    packet = Publish(b"a/b", b"", qos=1).encode(7, v5=True)
    for body in (bytearray(packet[2:][:5]), bytearray(packet[2:-1] + b"\x05")):  # cut short; properties overrun
        client._in_packet = {"command": packet[0], "packet": body}
        assert client._handle_publish() == mqtt.MQTT_ERR_PROTOCOL
    assert seen == []


def test_the_client_refuses_to_start_without_manual_acknowledgement() -> None:
    with pytest.raises(ConfigurationError, match="manual_ack"):
        IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    with pytest.raises(ConfigurationError, match="manual_ack"):
        IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=False, hooks=())


def test_an_untested_paho_runs_only_with_the_hooks_off(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigurationError, match=r"paho-mqtt 2\.3\.0 is not a version .* LIVINGLAB_PAHO_HOOKS=none"):
        check_paho(PAHO_HOOKS, version="2.3.0")
    with pytest.raises(ConfigurationError, match=r"paho-mqtt 3\.0\.0"):
        check_paho({"pubacks"}, version="3.0.0")
    check_paho(frozenset(), version="2.3.0")
    assert "was not tested" in caplog.text
    with pytest.raises(ConfigurationError, match="unknown paho hooks: speed"):
        check_paho({"speed"})


def test_a_changed_private_method_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def _handle_publish(self: mqtt.Client, packet: bytes) -> int:  # a paho whose method took a new parameter
        return 0

    monkeypatch.setattr(mqtt.Client, "_handle_publish", _handle_publish)
    with pytest.raises(ConfigurationError, match=r"Client\._handle_publish .* 'publish' hook"):
        IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True, hooks={"pubacks"})
    monkeypatch.delattr(mqtt.Client, "_packet_queue")
    with pytest.raises(ConfigurationError, match=r"Client\._packet_queue is missing"):
        check_paho({"pubacks"})


def test_pubacks_of_a_batch_are_queued_as_one_buffer_in_order() -> None:
    client = IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    client.queue_pubacks([1, 65535, 300])
    packets = list(client._out_packet)
    assert len(packets) == 1
    assert packets[0]["packet"] == b"\x40\x02\x00\x01" + b"\x40\x02\xff\xff" + b"\x40\x02\x01\x2c"


class _CountingReads(IngestClient):
    """Every read finds a whole packet waiting (a busy socket), and is counted."""

    reads = 0

    def _packet_read(self) -> MQTTErrorCode:
        self.reads += 1
        return MQTTErrorCode.MQTT_ERR_SUCCESS


@pytest.mark.parametrize(("hooks", "behind", "expected"), [
    (PAHO_HOOKS, False, READS_PER_WAKEUP),
    (PAHO_HOOKS, True, 1),
    (PAHO_HOOKS - {"drain"}, False, 1),
])  # fmt: skip
def test_the_drain_hook_reads_many_packets_per_wakeup_unless_the_reader_is_behind(
    hooks: frozenset[str], behind: bool, expected: int
) -> None:
    client = _CountingReads(
        CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True, hooks=hooks
    )
    client.set_read_more(lambda: not behind)
    client._sock = socket.socket()  # connected, as far as loop_read looks
    try:
        assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    finally:
        client._sock.close()
        client._sock = None
    assert client.reads == expected
