"""Publishing a scenario over MQTT as SenML packs, in real time."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.domain import Kind
from livinglab.sensors import SensorSpec
from livinglab.settings import MqttUrl
from simulators.devices import air_reading, traffic_reading
from simulators.scenario import Scenario

log = logging.getLogger(__name__)


def senml_pack(spec: SensorSpec, ts_s: float, values: dict[str, float]) -> bytes:
    """One SenML pack (RFC 8428) with a base name and base time."""
    records: list[dict[str, Any]] = [{"bn": f"urn:dev:livinglab:{spec.sensor_id}:", "bt": int(ts_s)}]
    records += [{"n": name, "v": value} for name, value in values.items()]
    return json.dumps(records, separators=(",", ":")).encode()


def reading_for(spec: SensorSpec, ts_s: float, rng: np.random.Generator, tz_offset_h: float) -> dict[str, float]:
    model = air_reading if spec.kind is Kind.AIR else traffic_reading
    return model(spec, ts_s, rng, tz_offset_h)


class RealTimePublisher:
    """Every sensor publishes one pack per `interval_s`, aligned to its interval, with QoS 1."""

    def __init__(self, scenario: Scenario, mqtt_url: MqttUrl, *, prefix: str, client_id: str, seed: int) -> None:
        self.scenario = scenario
        self.prefix = prefix
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if mqtt_url.username:
            self.client.username_pw_set(mqtt_url.username, mqtt_url.password)
        self.client.reconnect_delay_set(1, 30)
        self._url = mqtt_url
        self.sent = 0

    def topic(self, spec: SensorSpec) -> str:
        return f"{self.prefix}/{spec.city}/{spec.kind.value}/{spec.sensor_id}"

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.client.connect_async(self._url.host, self._url.port, keepalive=30)
        self.client.loop_start()
        next_due = {s.sensor_id: 0.0 for s in self.scenario.sensors}
        try:
            while not self._stop.is_set():
                now = time.time()
                for spec in self.scenario.sensors:
                    if now < next_due[spec.sensor_id]:
                        continue
                    ts = now - now % spec.interval_s
                    values = reading_for(spec, ts, self._rng, self.scenario.timezone_offset_h)
                    self.client.publish(self.topic(spec), senml_pack(spec, ts, values), qos=1)
                    self.sent += 1
                    next_due[spec.sensor_id] = ts + spec.interval_s
                wait = min(next_due.values()) - time.time()
                self._stop.wait(max(0.05, min(wait, 1.0)))
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("simulator stopped after %d messages", self.sent)
