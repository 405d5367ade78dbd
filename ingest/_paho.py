"""A paho-mqtt client tuned for a subscriber that acknowledges in batches, through three private paho hooks.

Each hook can be turned off (`LIVINGLAB_PAHO_HOOKS`); each keeps its place by a measured gain (`python -m
benchmarks.ingest`, the rows with one hook off), and a differential test feeds the same packets through the lean
path and through paho's own (`tests/ingest/test_paho.py`).

- `pubacks`: the PUBACKs of a committed batch are queued as one buffer through `_packet_queue`, so they leave in one
  socket write instead of one write (and one wake-up of the network thread) per message. A PUBACK is four bytes
  (MQTT 3.1.1 section 3.4; MQTT 5 section 3.4.2.1 allows omitting the reason code when it is 0x00 Success).
- `drain`: `loop_read` reads up to `READS_PER_WAKEUP` packets each time the socket wakes the network thread, where
  paho reads one (it reads more only while it tracks QoS 1 and 2 flows of its own, which the ingester has few of).
  Under load each message otherwise paid a whole turn of paho's loop (a `select`, the write and keepalive checks).
  It stops at the first packet not yet complete, as paho does, and each packet is still read with its own system
  calls, so the thread lets go of the GIL as before. It reads one packet per wake-up again while the building
  thread is behind (`set_read_more`: more than a batch waits in the inbox): reading ahead then only fills the inbox
  faster, and with a broker that sends past the in-flight window (Mosquitto before 2.0.13, see `ingest.inbox`) the
  inbox overflowed more often under bursts: in runs of the ingest benchmark's simulated city on Mosquitto 2.0.11,
  4 of 13 without this limit, 1 of 14 with a whole window as the limit, 0 of 16 with a batch, and 0 of 12 without
  the hook.
- `publish`: `_handle_publish` hands a QoS 0 or 1 PUBLISH to the publish sink as (topic, payload, packet id, QoS,
  retain) without an `MQTTMessage` and without parsing MQTT 5 properties into a `Properties` object, which costs
  paho more than everything else it does per message. The ingester reads no publish property. QoS 2 and a PUBLISH
  whose topic is empty (MQTT 5 topic alias) take paho's own path. This path sends no PUBACK, so it is correct
  only with `manual_ack=True` (the ingester acknowledges after COMMIT anyway).

One private override stays with every hook off: `_sock_recv` stamps `last_received_at`, the watchdog's evidence
that the link lives (no public callback sees a PINGRESP). Another hook, reading the socket in 64 KiB chunks and
serving packets from that buffer, did not earn its place: draining a backlog, the ingester used less CPU per
message and went faster without it (the network thread kept the GIL through a whole buffer of packets while the
building and writing threads waited).

These are paho's private parts, so `check_paho` runs at start: paho must be a minor version the differential test
ran on (`TESTED_PAHO`; pyproject.toml pins the same range), and every method a hook overrides must still have the
parameters it had. An unknown paho runs only with every hook off, and then with a warning.
"""

from __future__ import annotations

import inspect
import logging
import struct
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from livinglab.errors import ConfigurationError

log = logging.getLogger(__name__)

#: The hooks, by the names `LIVINGLAB_PAHO_HOOKS` and the benchmark use.
PAHO_HOOKS = frozenset({"pubacks", "publish", "drain"})
#: Packets the `drain` hook reads at most per wake-up of the network thread (then paho's loop takes its turn: writes,
#: keepalive).
READS_PER_WAKEUP = 64
#: paho-mqtt minor versions the differential test ran on.
TESTED_PAHO = ("2.1", "2.2")
#: The private methods each hook overrides or calls, with the parameters the hook relies on.
_ASSUMED: dict[str, dict[str, tuple[str, ...]]] = {
    "stamp": {"_sock_recv": ("self", "bufsize")},
    "publish": {"_handle_publish": ("self",)},
    "pubacks": {"_packet_queue": ("self", "command", "packet", "mid", "qos", "info")},
    "drain": {"loop_read": ("self", "max_packets"), "_packet_read": ("self",), "_loop_rc_handle": ("self", "rc")},
}

_PUBACK = 0x40

#: topic (bytes), payload, packet id (0 for QoS 0), QoS, retain flag (set when the broker sends a retained message)
PublishSink = Callable[[bytes, bytes, int, int, bool], None]


def check_paho(hooks: AbstractSet[str], version: str = paho.mqtt.__version__) -> None:
    """Raise ConfigurationError unless the installed paho is one `hooks` may rely on (see the module docstring)."""
    unknown = set(hooks) - PAHO_HOOKS
    if unknown:
        known = ", ".join(sorted(PAHO_HOOKS))
        raise ConfigurationError(f"unknown paho hooks: {', '.join(sorted(unknown))} (known: {known})")
    minor = ".".join(version.split(".")[:2])
    if minor not in TESTED_PAHO:
        if hooks:
            raise ConfigurationError(
                f"paho-mqtt {version} is not a version the ingester's paho hooks were tested with"
                f" ({', '.join(TESTED_PAHO)}): install one of those, or set LIVINGLAB_PAHO_HOOKS=none"
            )
        log.warning("paho-mqtt %s was not tested with the ingester; running with paho's own paths", version)
    for hook in ("stamp", *sorted(hooks)):
        for name, expected in _ASSUMED[hook].items():
            method = getattr(mqtt.Client, name, None)
            found = tuple(inspect.signature(method).parameters) if callable(method) else None
            if found != expected:
                raise ConfigurationError(
                    f"paho-mqtt {version}: Client.{name} is {'missing' if found is None else found}, the {hook!r}"
                    f" hook expects {expected}; set LIVINGLAB_PAHO_HOOKS without {hook!r}"
                )


class IngestClient(mqtt.Client):
    """paho's Client with batched PUBACKs, a lean PUBLISH path and several packets read per wake-up (each a hook, see
    above).

    Takes paho's arguments, and `hooks`; `manual_ack=True` is required. Raises ConfigurationError when paho does
    not fit the hooks.
    """

    def __init__(self, *args: Any, hooks: AbstractSet[str] = PAHO_HOOKS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # first: paho's __del__ expects a whole client, even a refused one
        if kwargs.get("manual_ack") is not True:
            raise ConfigurationError("the ingester acknowledges after COMMIT: its client needs manual_ack=True")
        check_paho(hooks)
        if "publish" in hooks and not isinstance(getattr(self, "_in_packet", None), dict):
            raise ConfigurationError("paho-mqtt: Client._in_packet is not a dict; the 'publish' hook cannot read it")
        self.hooks = frozenset(hooks)
        self._batched_pubacks = "pubacks" in hooks
        self._lean_publish = "publish" in hooks
        self._drain = "drain" in hooks
        #: time.monotonic() of the last bytes read from the broker (a watchdog's evidence that the link lives).
        self.last_received_at = time.monotonic()
        self._publish_sink: PublishSink | None = None
        self._read_more: Callable[[], bool] = lambda: True

    def set_read_more(self, read_more: Callable[[], bool]) -> None:
        """Read past a wake-up's first packet only while `read_more()` (the `drain` hook)."""
        self._read_more = read_more

    def set_publish_sink(self, sink: PublishSink | None) -> None:
        """Receive QoS 0 and 1 PUBLISH packets through `sink` instead of `on_message` (the `publish` hook; without
        it, `on_message` gets them as paho delivers them)."""
        self._publish_sink = sink if self._lean_publish else None

    def queue_pubacks(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages by packet id, in the given order."""
        if not mids:
            return
        if not self._batched_pubacks:
            for mid in mids:
                self.ack(mid, 1)
            return
        blob = struct.pack(f"!{len(mids)}I", *((_PUBACK << 24) | (2 << 16) | mid for mid in mids))
        self._packet_queue(_PUBACK, blob, 0, 0)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if not self._drain:
            return super().loop_read(max_packets)
        read_more = self._read_more
        for i in range(READS_PER_WAKEUP):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if i and not read_more():
                break
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        data = super()._sock_recv(bufsize)
        self.last_received_at = time.monotonic()
        return data

    # -- lean PUBLISH ---------------------------------------------------------------------------------------

    def _handle_publish(self) -> Any:
        sink = self._publish_sink
        if sink is None:
            return super()._handle_publish()
        command = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (command & 0x06) >> 1
        try:
            end = 2 + ((packet[0] << 8) | packet[1])
            if qos == 2 or end == 2:  # QoS 2 state, or a topic alias: paho's own path
                return super()._handle_publish()
            topic = bytes(packet[2:end])
            mid = 0
            if qos:
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            if self._protocol == mqtt.MQTTv5:
                length, shift = 0, 0
                while True:
                    byte = packet[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                end += length
        except IndexError:
            return mqtt.MQTT_ERR_PROTOCOL  # a truncated packet: paho drops the connection and reconnects
        if end > len(packet):
            return mqtt.MQTT_ERR_PROTOCOL  # properties longer than the packet, as paho's own parser finds
        sink(topic, bytes(packet[end:]), mid, qos, bool(command & 0x01))
        return mqtt.MQTT_ERR_SUCCESS
