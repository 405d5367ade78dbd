"""Publishing over MQTT with a bounded window of unacknowledged messages, and the simulated clock.

paho queues whatever it is given in memory; the publisher keeps at most `window` messages unacknowledged (QoS 1:
until PUBACK; QoS 0: until written to the socket), so a slow broker or a lost connection holds the simulator back
instead of growing memory. While disconnected, paho reconnects and resends what was not acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.errors import LivinglabError
from livinglab.settings import MqttUrl

log = logging.getLogger(__name__)


class PublishError(LivinglabError):
    """The broker could not be reached or refused the simulator."""


class MqttPublisher:
    """One MQTT client publishing at QoS 0 or 1 with flow control."""

    def __init__(self, url: MqttUrl, client_id: str, *, qos: int = 1, window: int = 1000) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.url = url
        self.qos = qos
        self.window = window
        self.published = 0
        self.acknowledged = 0
        #: QoS 0 messages paho could not hand to the socket (never acknowledged, never resent).
        self.dropped = 0
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._closing = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.error("broker refused the simulator: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("simulator disconnected from the broker (%s); reconnecting", reason)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, _mid: int, _reason: Any, _props: Any) -> None:
        with self._cond:
            self.acknowledged += 1
            self._cond.notify_all()

    def connect(self, timeout_s: float = 30.0) -> None:
        """Connect and start the network thread; raises PublishError if the broker does not answer in time."""
        self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise PublishError(f"no connection to the broker at {self.url} within {timeout_s:.0f} s: {self._refused}")

    def publish(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> bool:
        """Publish one message, first waiting while the window is full. False if stopped while waiting."""
        with self._cond:
            while self.published - self.acknowledged >= self.window:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.2)
        if self.qos == 0:
            # paho drops a QoS 0 message published while disconnected: wait for the connection instead.
            while not self._connected.wait(0.2):
                if stop is not None and stop.is_set():
                    return False
        info = self.client.publish(topic, payload, qos=self.qos)
        if self.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.dropped += 1
            return True
        with self._cond:
            self.published += 1
        return True

    @property
    def outstanding(self) -> int:
        return self.published - self.acknowledged

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything published is acknowledged (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acknowledged < self.published:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))
        return True

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


class SimClock:
    """Simulated time: real time (`speed` None) or `speed` times faster from `start_s`."""

    def __init__(self, start_s: float | None = None, speed: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.start_s = time.time() if start_s is None else start_s
        self._wall0 = time.monotonic()

    def now(self) -> float:
        if self.speed is None:
            return time.time()
        return self.start_s + (time.monotonic() - self._wall0) * self.speed

    def wait_until(self, sim_s: float, stop: threading.Event) -> bool:
        """Sleep until the simulated clock reaches `sim_s`; False if stopped first."""
        while True:
            ahead = sim_s - self.now()
            if ahead <= 0:
                return True
            wall = ahead if self.speed is None else ahead / self.speed
            if stop.wait(min(wall, 0.5)):
                return False
