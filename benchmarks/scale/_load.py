"""Load for the scale benchmark: sensors, MQTT backlogs queued on the broker, readings bulk-loaded by binary COPY."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.topics import subscription
from livinglab.domain import QUANTITIES, Kind
from livinglab.embedded import MosquittoBroker
from livinglab.sensors import SensorSpec
from livinglab.storage.copy import encode_binary_copy
from livinglab.storage.registry import insert_sensor

#: Air quantities every benchmark sensor reports.
SERIES_QUANTITIES = ("pm25", "pm10", "no2", "o3", "co")


def register_sensors(url: str, count: int, *, interval_s: int = 60) -> list[str]:
    ids = [f"aq-{i:04d}" for i in range(count)]
    with psycopg.connect(url) as conn:
        for i, sensor_id in enumerate(ids):
            insert_sensor(
                conn,
                SensorSpec(
                    sensor_id=sensor_id,
                    city="jakarta",
                    district=f"d{i % 10}",
                    kind=Kind.AIR,
                    lat=-6.2,
                    lon=106.8,
                    interval_s=interval_s,
                ),
            )
        conn.commit()
    return ids


def reading_messages(prefix: str, sensors: Sequence[str], per_message: int, messages: int) -> list[tuple[str, bytes]]:
    """SenML packs of `per_message` pm25 readings, one second apart, sensors in turn, within the last hours."""
    rng = np.random.default_rng(7)
    start = int(time.time()) - 3 * 3600
    out = []
    cursor = dict.fromkeys(sensors, start)
    for i in range(messages):
        sensor_id = sensors[i % len(sensors)]
        base = cursor[sensor_id]
        cursor[sensor_id] = base + per_message
        values = np.round(rng.uniform(5.0, 150.0, per_message), 2)
        records: list[dict[str, Any]] = [{"bn": f"urn:dev:livinglab:{sensor_id}:", "bt": base, "n": "pm25"}]
        records[0]["v"] = float(values[0])
        records += [{"n": "pm25", "t": t, "v": float(v)} for t, v in enumerate(values[1:], start=1)]
        out.append((f"{prefix}/jakarta/air/{sensor_id}", json.dumps(records).encode()))
    return out


def create_sessions(broker: MosquittoBroker, client_ids: Sequence[str], prefix: str, group: str) -> None:
    """Persistent MQTT 5 sessions subscribed exactly as an ingester subscribes, left offline.

    The broker then queues what is published for these client ids; an ingester that connects with one of them takes
    over that session and its backlog, so its drain rate is measured without any publisher in the way.
    """
    for client_id in client_ids:
        _create_session(broker, client_id, subscription(prefix, group))


def _create_session(broker: MosquittoBroker, client_id: str, topic_filter: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    subscribed: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _r, _p: subscribed.append(mid)
    client.loop_start()
    _, mid = client.subscribe(topic_filter, qos=1)
    deadline = time.monotonic() + 10
    while mid not in subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    if mid not in subscribed:
        raise TimeoutError(f"the broker did not acknowledge the subscription of {client_id}")


def publish_backlog(broker: MosquittoBroker, messages: Sequence[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker acknowledges; returns messages per second."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(messages) / (time.perf_counter() - started)


def copy_readings(
    conn: psycopg.Connection[Any],
    sensors: int,
    *,
    end_s: int,
    minutes: int,
    interval_s: int,
    chunk_rows: int = 2_000_000,
) -> int:
    """Bulk-load readings of `sensors` sensors x SERIES_QUANTITIES every `interval_s` for `minutes` minutes ending
    at `end_s`, oldest first, by binary COPY in chunks; returns the rows loaded."""
    codes = np.array([QUANTITIES[q].code for q in SERIES_QUANTITIES], dtype=np.int16)
    per_step = sensors * codes.size
    keys = np.repeat(np.arange(1, sensors + 1, dtype=np.int32), codes.size)
    quantities = np.tile(codes, sensors)
    steps = minutes * 60 // interval_s
    start_s = end_s - steps * interval_s
    rng = np.random.default_rng(start_s)
    loaded = 0
    steps_per_chunk = max(1, chunk_rows // per_step)
    for first in range(0, steps, steps_per_chunk):
        n = min(steps_per_chunk, steps - first)
        ts_s = start_s + (first + np.arange(n, dtype=np.int64)) * interval_s
        ts_us = np.repeat(ts_s * 1_000_000, per_step)
        rows = ts_us.size
        payload = encode_binary_copy(
            [
                ("int4", np.tile(keys, n)),
                ("int2", np.tile(quantities, n)),
                ("timestamptz", ts_us),
                ("float8", np.round(rng.gamma(4.0, 10.0, rows), 2)),
                ("timestamptz", ts_us + 2_000_000),
            ]
        )
        with (
            conn.transaction(),
            conn.cursor().copy(
                "COPY readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.write(payload)
        loaded += rows
    return loaded
