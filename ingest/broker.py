"""The ingester's MQTT side: protocol choice, persistent session, receiving into the inbox, acknowledging batches.

Session: a fixed client id and a persistent session. In MQTT 5 that takes `clean_start=False` AND a Session Expiry
Interval above 0 (without it the broker drops the session at disconnect); the CONNECT also carries a Receive
Maximum, the number of unacknowledged QoS 1 messages the broker may send, which bounds the ingester's memory. For
MQTT 3.1.1 brokers (amqtt) the session is `clean_session=False`, and the broker's own in-flight limit applies.

Acknowledgements and reconnects: packet ids belong to a connection's session. Each connection gets a new
`generation`; a batch's messages are acknowledged only if they arrived on the current connection. After a
reconnect that resumed the session the broker redelivers everything unacknowledged, so messages from earlier
connections still waiting in the inbox are dropped; those already in a batch are stored and their redelivered
copies count as duplicates. After a reconnect to a new session (the broker lost it) nothing is redelivered, so
waiting messages are stored, just not acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest._paho import PAHO_HOOKS, IngestClient
from ingest.batch import Message
from ingest.inbox import Inbox
from ingest.topics import shared, subscription
from livinglab.mqtt_packets import connect_packet
from livinglab.settings import MqttUrl

log = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]

_CONNACK = 0x20
_V5_UNSUPPORTED_PROTOCOL_VERSION = 0x84
_V311_UNACCEPTABLE_PROTOCOL_VERSION = 0x01


def probe_protocol(url: MqttUrl, *, timeout_s: float = 5.0) -> Protocol:
    """Whether the broker speaks MQTT 5: send an MQTT 5 CONNECT and read the answer.

    A 3.1.1-only broker answers with return code 1 (unacceptable protocol version) or closes the connection.
    Raises OSError when the broker cannot be reached.
    """
    raw = socket.create_connection((url.host, url.port), timeout=timeout_s)
    sock: socket.socket = ssl.create_default_context().wrap_socket(raw, server_hostname=url.host) if url.tls else raw
    with sock:
        # Clean start, no session expiry: the probe leaves no session behind.
        sock.sendall(connect_packet(url, f"livinglab-probe-{secrets.token_hex(6)}", level=5, keepalive_s=10))
        try:
            head = sock.recv(4)
        except (ConnectionResetError, TimeoutError):
            return "3.1.1"
        if len(head) < 4 or head[0] != _CONNACK:
            return "3.1.1"
        reason = head[3]
        if head[1] == 2 and reason == _V311_UNACCEPTABLE_PROTOCOL_VERSION:
            return "3.1.1"
        if reason == _V5_UNSUPPORTED_PROTOCOL_VERSION:
            return "3.1.1"
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return "5"


class BrokerLink:
    """A paho client in its own network thread, feeding `inbox`; acknowledges batches on request."""

    def __init__(
        self,
        url: MqttUrl,
        *,
        protocol: Protocol,
        client_id: str,
        prefix: str,
        inbox: Inbox,
        shared_group: str | None = None,
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 2000,
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        extra_filters: Sequence[str] = (),
        paho_hooks: AbstractSet[str] = PAHO_HOOKS,
        batch_size: int | None = None,
    ) -> None:
        self.url = url
        self.protocol = protocol
        self.client_id = client_id
        self.filter = subscription(prefix, shared_group)
        #: Every filter subscribed: the device topics first, then other sources' (LoRaWAN network servers).
        self.filters = [self.filter, *(shared(f, shared_group) for f in extra_filters)]
        #: Filters of other sources the broker refused (its ACL): the device topics are served, those are not.
        self.refused_filters: list[str] = []
        self.inbox = inbox
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker granted the subscription on this connection
        self.generation = 0
        self.session_present = False
        self.connections = 0
        #: paho's network thread, known from its first CONNACK on (the ingester counts its CPU time as a stage's).
        self.network_thread: threading.Thread | None = None
        self.last_error: str | None = "not connected yet"
        self.received = 0
        self._lock = threading.Lock()
        v5 = protocol == "5"
        self.client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
            hooks=paho_hooks,
        )
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.set_publish_sink(self._on_publish)
        # With more than a batch waiting in the inbox the building thread is behind: read one packet per wake-up then,
        # as paho does, rather than fill the inbox faster (the `drain` hook of ingest._paho).
        behind_at = batch_size or max(1, receive_maximum // 4)
        self.client.set_read_more(lambda: len(self.inbox) < behind_at)

    # -- paho callbacks (network thread) ----------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("%s", self.last_error)
            return
        self.network_thread = threading.current_thread()
        with self._lock:
            self.generation += 1
            self.session_present = bool(flags.session_present)
            self.connections += 1
        if self.session_present:
            dropped = self.inbox.discard_older(self.generation)
            if dropped:
                log.info("session resumed: %d queued messages will be redelivered", dropped)
        if self.protocol == "5":
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            client.subscribe([(f, options) for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])
        self.connected.set()
        log.info(
            "connected to %s as %s (MQTT %s, session %s)",
            self.url,
            self.client_id,
            self.protocol,
            "resumed" if self.session_present else "new",
        )

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        reasons = list(reasons)
        if not reasons or reasons[0].is_failure:
            self.last_error = f"subscription to {self.filter} refused: {reasons[0] if reasons else 'no answer'}"
            log.error("%s (check the broker's ACL for this user)", self.last_error)
            return
        self.refused_filters = [f for f, r in zip(self.filters[1:], reasons[1:], strict=False) if r.is_failure]
        if self.refused_filters:
            log.error(
                "subscription to %s refused (check the broker's ACL for this user, or turn the source off)",
                ", ".join(self.refused_filters),
            )
        self.last_error = None
        self.subscribed.set()
        log.info("subscribed to %s", ", ".join(f for f in self.filters if f not in self.refused_filters))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            self.generation += 1  # acknowledgements of messages received so far must not reach the next connection
        self.connected.clear()
        self.subscribed.clear()
        self.last_error = f"disconnected: {reason}"
        log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_publish(self, topic: bytes, payload: bytes, mid: int, qos: int, retained: bool) -> None:
        try:
            text = topic.decode("utf-8")
        except UnicodeDecodeError:  # brokers refuse such topics; never let one stop the network thread
            text = topic.decode("utf-8", "backslashreplace")
        self.received += 1
        self.inbox.put(Message(text, payload, mid, qos, time.time(), self.generation, retained))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never let one stop the network thread
            topic = msg._topic.decode("utf-8", "backslashreplace")
        self.received += 1
        self.inbox.put(
            Message(topic, bytes(msg.payload), msg.mid, msg.qos, time.time(), self.generation, bool(msg.retain))
        )

    # -- used by the service ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff for as long as the link runs."""
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry_s
            props.ReceiveMaximum = self.receive_maximum
            self.client.connect_async(
                self.url.host, self.url.port, keepalive=self.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.subscribed.clear()

    def acknowledge(self, messages: Sequence[Message]) -> int:
        """Send PUBACK for the QoS 1 messages that arrived on the current connection; returns how many."""
        with self._lock:
            generation = self.generation
            mids = [m.mid for m in messages if m.qos == 1 and m.generation == generation]
            if mids and self.connected.is_set():
                self.client.queue_pubacks(mids)
                return len(mids)
        return 0

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 0, not retained (rejection notices)."""
        if self.connected.is_set():
            self.client.publish(topic, payload, qos=0, retain=False)

    def check_alive(self) -> bool:
        """Drop a connection on which the broker has been silent for 1.5x the keepalive (a silent link).

        paho pings after one keepalive of silence, and a live broker answers at once; paho itself gives up only a
        whole keepalive after its ping. Returns False when the connection was dropped.
        """
        if not self.connected.is_set():
            return True
        silent_s = time.monotonic() - self.client.last_received_at
        if silent_s < 1.5 * self.keepalive_s:
            return True
        self.last_error = f"no traffic from the broker for {silent_s:.1f} s (keepalive {self.keepalive_s} s)"
        log.warning("%s; dropping the connection", self.last_error)
        self.connected.clear()
        self.force_reconnect()
        return False

    def force_reconnect(self) -> None:
        """Drop the connection; paho reconnects, and a resumed session redelivers what was not acknowledged."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # also ssl.SSLSocket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
