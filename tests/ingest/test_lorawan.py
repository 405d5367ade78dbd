"""LoRaWAN uplinks through a real Mosquitto and PostgreSQL: the network servers' documented payloads stored with their
time, once; every new reason code; unknown DevEUIs, replayed once registered; field maps with units; other events
ignored; frame-counter gaps counted per device. One ingester (on a shared subscription) serves the module."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from ingest import Ingester
from livinglab.embedded import MosquittoBroker
from livinglab.storage import CHANNEL_REPLAY
from tests.support.ingest import Notices, ingesting, publish_all
from tests.support.lorawan import chirpstack_topic, chirpstack_uplink, fixture, tts_topic, tts_uplink
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

COUNTERS = (
    "SELECT sum(messages), sum(accepted), sum(rejected), sum(duplicates), sum(ignored_members), sum(fcnt_gaps),"
    " sum(frames_missed) FROM ingest_counters JOIN sensors USING (sensor_key) WHERE sensor_id = %s"
)


@dataclass
class Platform:
    url: str
    broker: MosquittoBroker
    ingester: Ingester
    notices: Notices

    def register(self, sensor_id: str, dev_eui: str, **fields: Any) -> None:
        register(self.url, air(sensor_id, dev_eui=dev_eui, **fields))

    def send(self, *messages: tuple[str, bytes], qos: int = 1) -> None:
        """Publish and wait until the ingester has taken every message into a committed batch."""
        before = self.ingester.metrics.messages._value.get()
        publish_all(self.broker.port, list(messages), qos=qos)
        wait_until(lambda: self.ingester.metrics.messages._value.get() >= before + len(messages), timeout_s=20)

    def counters(self, sensor_id: str) -> tuple[int, ...]:
        # The batch that empties the ingester's queue writes the counters gathered so far (see ingest.tallies).
        return tuple(int(v or 0) for v in rows(self.url, COUNTERS, (sensor_id,))[0])

    def rejected(self, **where: str) -> list[tuple[Any, ...]]:
        condition = " AND ".join(f"{column} = %({column})s" for column in where) or "true"
        query = f"SELECT reason, city, kind, sensor_id, topic FROM rejected WHERE {condition} ORDER BY id"
        return rows(self.url, query, where)


@pytest.fixture(scope="module")
def platform(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed")
    url = module_database_url
    broker = MosquittoBroker(tmp_path_factory.mktemp("lorawan-broker"))
    broker.start()
    settings = {
        "database_url": url,
        "mqtt_url": broker.url,
        "client_id": f"lorawan-{uuid.uuid4().hex[:8]}",
        "shared_group": "ingest",
        # The documented examples are from 2020 and 2022: accept them as they are.
        "max_lateness_s": 20 * 365 * 86400.0,
        # Every event of both servers, so that the ones that are not uplinks reach the ingester too.
        "chirpstack_topic_filter": "application/+/device/+/event/+",
        "tts_topic_filter": "v3/+/devices/#",
    }
    notices = Notices(broker.port, "livinglab/v1")
    try:
        with ingesting(**settings) as ingester:
            yield Platform(url, broker, ingester, notices)
    finally:
        notices.close()
        broker.stop()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _readings(url: str, sensor_id: str) -> list[tuple[Any, ...]]:
    query = (
        "SELECT q.name, r.ts, r.value FROM readings r JOIN sensors s USING (sensor_key)"
        " JOIN quantities q ON q.code = r.quantity WHERE s.sensor_id = %s ORDER BY r.ts, q.name"
    )
    return rows(url, query, (sensor_id,))


def _recent(seconds_ago: float) -> str:
    """An RFC 3339 time with nanoseconds, as ChirpStack writes it."""
    moment = datetime.fromtimestamp(time.time() - seconds_ago, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123+00:00"


def test_chirpstack_uplinks_are_stored_with_their_time_once(platform: Platform) -> None:
    platform.register("cs-doc", "0101010101010101")  # the documented example's DevEUI
    topic = chirpstack_topic("0101010101010101")
    with_codec = chirpstack_uplink(fcnt=10)  # the documented uplink with the documented codec's output
    platform.send((topic, with_codec))
    # "2022-07-18T09:34:15.775023242+00:00", truncated to the microsecond.
    stored = [("temp", _utc("2022-07-18T09:34:15.775023+00:00"), 22.5)]
    assert _readings(platform.url, "cs-doc") == stored
    platform.send((topic, with_codec))  # the network server delivers it again: nothing new
    assert _readings(platform.url, "cs-doc") == stored
    platform.send((topic, fixture("chirpstack-up.json")))  # as documented: no codec output
    assert platform.rejected(sensor_id="cs-doc") == [("undecoded_payload", "jakarta", "air", "cs-doc", topic)]
    wait_until(lambda: any(t == "livinglab/v1/jakarta/air/cs-doc/errors" for t, *_ in platform.notices.received))
    errors = [n for t, n, *_ in platform.notices.received if t.endswith("/cs-doc/errors")]
    assert errors[0]["reason"] == "undecoded_payload"
    # messages, accepted, rejected, duplicates, ignored members, fcnt gaps, frames missed
    assert platform.counters("cs-doc") == (3, 1, 1, 1, 0, 0, 0)
    assert platform.ingester.metrics.uplinks.labels("chirpstack")._value.get() >= 3


def test_things_stack_uplinks_through_field_maps_with_units(platform: Platform) -> None:
    # The documented uplink names its reading "temperature"; the DevEUI matches whatever its case.
    platform.register("tts-doc", "0004a30b001c0530", field_map={"temperature": "temp"})
    platform.send((tts_topic("dev1"), fixture("tts-up.json")))
    assert _readings(platform.url, "tts-doc") == [("temp", _utc("2020-02-12T15:15:45.789585Z"), 1.0)]
    assert platform.counters("tts-doc")[4] == 1  # "luminosity" maps to nothing: ignored, counted

    field_map = {"no2_ppb": {"quantity": "no2", "unit": "ppb"}, "t": {"quantity": "temp", "unit": "K"}}
    platform.register("tts-units", "0004a30b001c0531", field_map=field_map)
    received_at = _recent(30)
    decoded = {"no2_ppb": 24.45, "t": 300.15, "battery": 3.1, "gps": {"lat": -6.2}}
    platform.send((tts_topic("dev2"), tts_uplink("0004A30B001C0531", decoded, received_at=received_at)))
    stored = _readings(platform.url, "tts-units")
    assert [(q, ts) for q, ts, _ in stored] == [("no2", _utc(received_at[:26] + "+00:00")), ("temp", stored[1][1])]
    assert stored[0][2] == pytest.approx(46.0055)  # 24.45 ppb of NO2 at 25 C
    assert stored[1][2] == pytest.approx(27.0)
    assert platform.counters("tts-units")[4] == 2

    platform.register("tts-bare", "4200000000000000")
    platform.send((tts_topic("dev1", application="app1"), fixture("tts-up-mqtt.json")))  # no payload formatter
    assert [r[0] for r in platform.rejected(sensor_id="tts-bare")] == ["undecoded_payload"]


def test_codec_output_that_maps_to_nothing_or_to_the_other_kind(platform: Platform) -> None:
    platform.register("cs-odd", "00000000000000aa")
    topic = chirpstack_topic("00000000000000aa")
    platform.send(
        (topic, chirpstack_uplink("00000000000000aa", {"battery": 3.6, "luminosity": 0.64}, time=_recent(20))),
        (topic, chirpstack_uplink("00000000000000aa", {"temp": 20.0, "speed": 31.0}, time=_recent(19))),
        (topic, chirpstack_uplink("00000000000000aa", {"temp": 90.0}, time=_recent(18))),
    )
    assert [r[0] for r in platform.rejected(sensor_id="cs-odd")] == ["no_readings", "kind_mismatch", "out_of_range"]
    assert _readings(platform.url, "cs-odd") == []


def test_an_unknown_dev_eui_is_refused_then_replayed_once_registered(platform: Platform) -> None:
    payload = chirpstack_uplink("0a0b0c0d0e0f1011", {"rh": 71.5}, time=_recent(60))
    topic = chirpstack_topic("0a0b0c0d0e0f1011")
    platform.send((topic, payload))
    assert platform.rejected(topic=topic) == [("unknown_sensor", None, None, None, topic)]
    platform.register("cs-late", "0A0B0C0D0E0F1011")  # any case
    with psycopg.connect(platform.url, autocommit=True) as conn:
        (rejected_id,) = conn.execute("SELECT id FROM rejected WHERE topic = %s", (topic,)).fetchone()  # type: ignore[misc]
        conn.execute("UPDATE rejected SET replay_requested_at = clock_timestamp() WHERE id = %s", (rejected_id,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REPLAY, str(rejected_id)))
    wait_until(lambda: scalar(platform.url, "SELECT replay_outcome FROM rejected WHERE topic = %s", (topic,)))
    assert scalar(platform.url, "SELECT replay_outcome FROM rejected WHERE topic = %s", (topic,)) == "accepted"
    assert [(q, v) for q, _, v in _readings(platform.url, "cs-late")] == [("rh", 71.5)]


def test_other_events_of_the_servers_are_not_readings(platform: Platform) -> None:
    before = scalar(platform.url, "SELECT count(*) FROM rejected")
    ignored = platform.ingester.metrics.other_events
    counted = ignored.labels("chirpstack")._value.get(), ignored.labels("tts")._value.get()
    platform.send(
        (chirpstack_topic("0101010101010101", "join"), fixture("chirpstack-join.json")),
        (chirpstack_topic("0101010101010101", "status"), fixture("chirpstack-status.json")),
        (tts_topic("dev1", "join"), fixture("tts-join.json")),
        (tts_topic("dev1", "down/ack"), b'{"end_device_ids": {"device_id": "dev1"}}'),
    )
    assert ignored.labels("chirpstack")._value.get() == counted[0] + 2
    assert ignored.labels("tts")._value.get() == counted[1] + 2
    assert scalar(platform.url, "SELECT count(*) FROM rejected") == before


def test_frame_counter_gaps_are_counted_per_device(platform: Platform) -> None:
    platform.register("cs-gaps", "00000000000000bb")
    topic = chirpstack_topic("00000000000000bb")

    sent = {
        fcnt: chirpstack_uplink("00000000000000bb", {"temp": 20 + fcnt / 100}, fcnt=fcnt, time=_recent(600 - fcnt))
        for fcnt in (100, 101, 104, 105)
    }
    platform.send(*((topic, sent[f]) for f in (100, 101, 104)))  # 102 and 103 lost on the way
    platform.send((topic, sent[104]), (topic, sent[105]), qos=0)  # 104 delivered twice; QoS 0, as a bridge sends
    assert platform.counters("cs-gaps")[-2:] == (1, 2)
    assert platform.ingester.metrics.frames_missed.labels("cs-gaps")._value.get() == 2
    assert len(_readings(platform.url, "cs-gaps")) == 4
