"""A lean MQTT 3.1.1 publisher for the load mode: packets built in bulk, written in large chunks, PUBACKs counted.

paho spends tens of microseconds of Python per message and shares the GIL with its network thread, which caps one
process at a few thousand QoS 1 messages a second; a load generator would then measure itself. This client does only
what publishing needs (CONNECT, PUBLISH at QoS 0 or 1, PINGREQ, DISCONNECT), keeps at most `window` QoS 1 messages
unacknowledged, and ends with an error instead of reconnecting. Devices and the other modes use paho.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

from livinglab.errors import LivinglabError
from livinglab.mqtt_packets import connect_packet, remaining_length, utf8_field
from livinglab.settings import MqttUrl

_CONNACK, _PUBACK, _PINGRESP = 0x20, 0x40, 0xD0
_FLUSH_BYTES = 64 * 1024


class WireError(LivinglabError):
    """The broker refused the connection or it broke."""


class WirePublisher:
    """Publishes over one TCP (or TLS) connection; `publish` buffers, `flush` and `wait_acknowledged` drain."""

    def __init__(
        self, url: MqttUrl, client_id: str, *, qos: int = 1, window: int = 1000, keepalive_s: int = 60
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not 1 <= window <= 65535:
            raise ValueError("window must be 1..65535 (MQTT packet ids)")
        self.url = url
        self.client_id = client_id
        self.qos = qos
        self.window = window
        self.keepalive_s = keepalive_s
        self.published = 0
        self.acknowledged = 0
        self._buffer = bytearray()
        self._next_id = 0
        self._cond = threading.Condition()
        self._error: str | None = None
        self._last_write = time.monotonic()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._header = 0x30 | (qos << 1)

    def connect(self, timeout_s: float = 30.0) -> None:
        sock = socket.create_connection((self.url.host, self.url.port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.url.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.url.host)
        # A clean session: a load generator has nothing to resume.
        sock.sendall(connect_packet(self.url, self.client_id, level=4, keepalive_s=self.keepalive_s))
        reply = self._read_exactly(sock, 4)
        if reply[0] != _CONNACK or reply[3] != 0:
            sock.close()
            raise WireError(f"broker at {self.url} refused the connection (CONNACK return code {reply[3]})")
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name="wire-reader", daemon=True)
        self._reader.start()

    @staticmethod
    def _read_exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise WireError("the broker closed the connection")
            data += chunk
        return data

    def _read_loop(self) -> None:
        assert self._sock is not None
        pending = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise WireError("the broker closed the connection")
                pending += chunk
                acks = 0
                while len(pending) >= 2:
                    kind, length = pending[0] & 0xF0, pending[1]  # every packet a broker sends a publisher is short
                    if len(pending) < 2 + length:
                        break
                    if kind == _PUBACK:
                        acks += 1
                    elif kind != _PINGRESP:
                        raise WireError(f"unexpected packet type 0x{kind:02x} from the broker")
                    pending = pending[2 + length :]
                if acks:
                    with self._cond:
                        self.acknowledged += acks
                        self._cond.notify_all()
        except (OSError, WireError) as exc:
            with self._cond:
                self._error = self._error or str(exc)
                self._cond.notify_all()

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue one message. `topic` is the UTF-8 topic with its 2-byte length prefix (see `topic_field`)."""
        if self.qos:
            if self.published - self.acknowledged >= self.window:
                self._wait_below(self.window)
            self._next_id = self._next_id % 65535 + 1
            size = len(topic) + 2 + len(payload)
            self._buffer += (
                bytes([self._header]) + remaining_length(size) + topic + struct.pack("!H", self._next_id) + payload
            )
        else:
            self._buffer += bytes([self._header]) + remaining_length(len(topic) + len(payload)) + topic + payload
        self.published += 1
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._error:
            raise WireError(self._error)
        if self._buffer:
            assert self._sock is not None
            self._sock.sendall(self._buffer)
            self._buffer.clear()
            self._last_write = time.monotonic()

    def _wait_below(self, limit: int) -> None:
        self.flush()
        with self._cond:
            while self.published - self.acknowledged >= limit:
                if self._error:
                    raise WireError(self._error)
                if not self._cond.wait(1.0) and time.monotonic() - self._last_write > self.keepalive_s / 2:
                    self._ping()

    def _ping(self) -> None:
        assert self._sock is not None
        self._sock.sendall(b"\xc0\x00")
        self._last_write = time.monotonic()

    def wait_acknowledged(self, timeout_s: float = 120.0) -> bool:
        """Flush and wait until every QoS 1 message is acknowledged (QoS 0: until written)."""
        self.flush()
        if not self.qos:
            return True
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acknowledged < self.published:
                if self._error:
                    raise WireError(self._error)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 1.0))
        return True

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self.flush()
            self._sock.sendall(b"\xe0\x00")
        except (OSError, WireError):
            pass
        finally:
            self._sock.close()
            self._sock = None


def topic_field(topic: str) -> bytes:
    """A topic as PUBLISH carries it (length-prefixed UTF-8): compute once per sensor."""
    return utf8_field(topic)
