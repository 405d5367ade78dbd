"""A paho-mqtt client tuned for a subscriber that acknowledges in batches.

Two private paho hooks are overridden, each guarded so that a paho without them falls back to the public API:

- `queue_pubacks`: the PUBACKs of a committed batch are queued as one buffer, so they leave in one socket write
  instead of one write (and one wake-up of the network thread) per message. A PUBACK is four bytes (MQTT 3.1.1
  section 3.4; MQTT 5 section 3.4.2.1 allows omitting the reason code when it is 0x00 Success).
- `_sock_recv` / `loop_read`: paho reads each packet with three `recv` calls (type, length, body). Reading the
  socket in 64 KiB chunks and serving packets from that buffer saves most system calls; `loop_read` keeps going
  while the buffer holds data, because `select` no longer sees it.
- `_handle_publish`: with a publish sink set, a QoS 0 or 1 PUBLISH goes to it as (topic, payload, packet id, QoS)
  without an `MQTTMessage` and without parsing MQTT 5 properties into a `Properties` object, which costs paho more
  than everything else it does per message. The ingester reads no publish property. QoS 2 and topic aliases take
  paho's own path.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

_PUBACK = 0x40
_READ_CHUNK = 65536
_HAS_PACKET_QUEUE = hasattr(mqtt.Client, "_packet_queue")
_HAS_SOCK_RECV = hasattr(mqtt.Client, "_sock_recv")
_HAS_HANDLE_PUBLISH = hasattr(mqtt.Client, "_handle_publish")

#: topic (bytes), payload, packet id (0 for QoS 0), QoS, retain flag (set when the broker sends a retained message)
PublishSink = Callable[[bytes, bytes, int, int, bool], None]


class IngestClient(mqtt.Client):
    """paho's Client with batched PUBACKs, buffered reads and a lean PUBLISH path."""

    def __init__(self, *args: Any, buffered_reads: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffered_reads = buffered_reads and _HAS_SOCK_RECV
        self._read_buffer = b""
        self._read_pos = 0
        #: time.monotonic() of the last bytes read from the broker (a watchdog's evidence that the link lives).
        self.last_received_at = time.monotonic()
        self._publish_sink: PublishSink | None = None

    def set_publish_sink(self, sink: PublishSink | None) -> None:
        """Receive QoS 0 and 1 PUBLISH packets through `sink` instead of `on_message` (see the module docstring)."""
        self._publish_sink = sink if _HAS_HANDLE_PUBLISH else None

    def queue_pubacks(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages by packet id, in the given order."""
        if not mids:
            return
        if not _HAS_PACKET_QUEUE:
            for mid in mids:
                self.ack(mid, 1)
            return
        blob = struct.pack(f"!{len(mids)}I", *((_PUBACK << 24) | (2 << 16) | mid for mid in mids))
        self._packet_queue(_PUBACK, blob, 0, 0)

    # -- buffered reads -------------------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._buffered_reads:
            data = super()._sock_recv(bufsize)
            self.last_received_at = time.monotonic()
            return data
        buffer, pos = self._read_buffer, self._read_pos
        if pos >= len(buffer):
            buffer = super()._sock_recv(max(bufsize, _READ_CHUNK))  # raises BlockingIOError when nothing is there
            self.last_received_at = time.monotonic()
            if not buffer:
                return buffer  # connection closed
            self._read_buffer, pos = buffer, 0
        chunk = buffer[pos : pos + bufsize]
        self._read_pos = pos + len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> Any:
        rc = super().loop_read(max_packets)
        while (
            rc == mqtt.MQTT_ERR_SUCCESS
            and self._buffered_reads
            and self._read_pos < len(self._read_buffer)
            and self._sock is not None
        ):
            rc = super().loop_read(1)
        return rc

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
        sink(topic, bytes(packet[end:]), mid, qos, bool(command & 0x01))
        return mqtt.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        self._read_buffer, self._read_pos = b"", 0
        super()._sock_close()
