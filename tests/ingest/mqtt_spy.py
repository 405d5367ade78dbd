"""A TCP proxy between one MQTT client and the broker that can hold the client's PUBACKs for inspection.

It parses both directions into MQTT packets: PUBLISH packets from the broker are remembered by packet id; before a
PUBACK from the client is forwarded, `on_puback(payload)` runs with the payload of the message it acknowledges. A
test uses that hook to look into the database at the very moment the acknowledgement leaves the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from livinglab.embedded import LOOPBACK

_PUBLISH, _PUBACK = 3, 4


def _read_packet(sock: socket.socket) -> bytes | None:
    """One whole MQTT packet (fixed header included), or None at end of stream."""
    head = _read_exactly(sock, 1)
    if head is None:
        return None
    length, multiplier, raw = 0, 1, bytearray()
    while True:
        byte = _read_exactly(sock, 1)
        if byte is None:
            return None
        raw += byte
        length += (byte[0] & 0x7F) * multiplier
        multiplier *= 128
        if not byte[0] & 0x80:
            break
    body = _read_exactly(sock, length) if length else b""
    return None if body is None else head + bytes(raw) + body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, multiplier = 0, 1
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            return value, pos


def _body_start(packet: bytes) -> int:
    _, pos = _varint(packet, 1)
    return pos


class MqttSpy:
    """Listens on a free port; each client connection is piped to the broker at `broker_port`."""

    def __init__(self, broker_port: int, *, mqtt5: bool, on_puback: Callable[[bytes], None]) -> None:
        self.broker_port = broker_port
        self.mqtt5 = mqtt5
        self.on_puback = on_puback
        self.publishes: dict[int, bytes] = {}
        self.pubacks: list[int] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            broker = socket.create_connection((LOOPBACK, self.broker_port))
            self._sockets += [client, broker]
            threading.Thread(target=self._pump, args=(broker, client, self._from_broker), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, broker, self._from_client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, inspect: Callable[[bytes], None]) -> None:
        with contextlib.suppress(OSError):
            while (packet := _read_packet(source)) is not None:
                inspect(packet)
                target.sendall(packet)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _from_broker(self, packet: bytes) -> None:
        if packet[0] >> 4 != _PUBLISH or not packet[0] & 0x06:
            return
        pos = _body_start(packet)
        topic_length = int.from_bytes(packet[pos : pos + 2], "big")
        pos += 2 + topic_length
        mid = int.from_bytes(packet[pos : pos + 2], "big")
        pos += 2
        if self.mqtt5:
            properties, pos = _varint(packet, pos)
            pos += properties
        self.publishes[mid] = packet[pos:]

    def _from_client(self, packet: bytes) -> None:
        if packet[0] >> 4 != _PUBACK:
            return
        pos = _body_start(packet)
        mid = int.from_bytes(packet[pos : pos + 2], "big")
        self.pubacks.append(mid)
        self.on_puback(self.publishes[mid])

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
