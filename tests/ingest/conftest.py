"""Fixtures and helpers of the ingest tests: registered sensors, batches built from real messages, publishers."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from ingest.batch import Batch, BatchBuilder, Message
from ingest.registry import SensorDirectory
from ingest.rows import Limits
from ingest.writer import BatchWriter
from livinglab.sensors import SensorSpec
from livinglab.storage.registry import insert_sensor

PREFIX = "livinglab/v1"
AIR = {"city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.2, "lon": 106.8}
TRAFFIC = {
    "city": "jakarta",
    "district": "Menteng",
    "kind": "traffic",
    "lat": -6.2,
    "lon": 106.8,
    "road_type": "4/2-T",
    "lanes": 2,
    "road_function": "arteri_sekunder",
    "city_population": 10_000_000,
}
_mids = itertools.count(1)


def ten_minutes_ago() -> float:
    """The start of the minute ten minutes ago: readings at that time plus a few seconds share one window, and are
    neither in the future nor too old."""
    return math.floor(time.time() / 60) * 60 - 600


def register(url: str, *sensor_ids: str, traffic: Sequence[str] = ()) -> None:
    """Register air stations (and traffic counters) in city `jakarta`."""
    with psycopg.connect(url) as conn:
        for sensor_id in sensor_ids:
            insert_sensor(conn, SensorSpec.model_validate({"sensor_id": sensor_id, **AIR}))
        for sensor_id in traffic:
            insert_sensor(conn, SensorSpec.model_validate({"sensor_id": sensor_id, **TRAFFIC}))


def message(sensor_id: str, payload: bytes, *, kind: str = "air", received_at_s: float | None = None) -> Message:
    return Message(
        f"{PREFIX}/jakarta/{kind}/{sensor_id}", payload, next(_mids) % 65535 + 1, 1, received_at_s or time.time()
    )


class Harness:
    """A batch builder and writer on one database, as the service wires them."""

    def __init__(self, url: str, *, limits: Limits | None = None, allowed_lateness_s: float = 7200.0) -> None:
        self.writer = BatchWriter(url, allowed_lateness_s=allowed_lateness_s)
        self.sensors = SensorDirectory(url, lookup_connection=self.writer.connection)
        self.sensors.load(self.writer.connection())
        self.builder = BatchBuilder(prefix=PREFIX, sensors=self.sensors, limits=limits or Limits())

    def build(self, messages: Sequence[Message]) -> Batch:
        return self.builder.build(messages)

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def harness(fresh_database_url: str) -> Iterator[Harness]:
    h = Harness(fresh_database_url)
    try:
        yield h
    finally:
        h.close()


def rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()
