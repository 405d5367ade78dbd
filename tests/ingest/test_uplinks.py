"""LoRaWAN uplinks on their own: the documented envelopes of ChirpStack and The Things Stack, topic filters, field
maps, frame counters, every reason code in its order, and (hypothesis) that decoding never raises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest._json import find_duplicate_key
from ingest.batch import BatchBuilder, Message
from ingest.broker import BrokerLink
from ingest.frames import _gaps, count_gaps
from ingest.inbox import Inbox
from ingest.outcome import Rejection
from ingest.rows import Limits, RowBuffer
from ingest.uplink_topics import UplinkSource, UplinkTopic, UplinkTopics, check_filter, filter_matches
from ingest.uplinks import Uplink, decode_uplink, parse_uplink, rfc3339_seconds
from livinglab.domain import QUANTITIES, Kind, RejectionReason
from livinglab.field_maps import compile_field_map
from livinglab.settings import MqttUrl
from livinglab.storage.registry import RegistryEntry
from tests.support.lorawan import chirpstack_topic, chirpstack_uplink, fixture, tts_topic, tts_uplink

R = RejectionReason
CS, TTS = UplinkSource.CHIRPSTACK, UplinkSource.TTS
RECEIVED = 1_795_852_800.0


def envelope(payload: bytes, source: UplinkSource = CS) -> Uplink:
    parsed = parse_uplink(payload, source, Limits())
    assert isinstance(parsed, Uplink), parsed
    return parsed


def entry(kind: Kind = Kind.AIR, field_map: dict[str, Any] | None = None) -> RegistryEntry:
    members = compile_field_map(field_map, kind) if field_map else None
    return RegistryEntry(7, "jakarta", kind, 60, "lora-1", "0101010101010101", members)


def readings(
    output: dict[str, Any] | None, *, kind: Kind = Kind.AIR, field_map: dict[str, Any] | None = None
) -> tuple[list[tuple[int, float, float]] | RejectionReason, int]:
    """(code, ts, canonical value) of each reading, or the reason; and the members ignored."""
    rows = RowBuffer()
    uplink = Uplink("0101010101010101", RECEIVED - 60, 3, output)
    rejection, ignored = decode_uplink(
        uplink, entry(kind, field_map), rows=rows, msg=0, received_at_s=RECEIVED, limits=Limits()
    )
    if rejection is not None:
        assert len(rows) == 0
        return rejection.reason, ignored
    values = [v * s + o for v, s, o in zip(rows.value, rows.scale, rows.offset, strict=True)]
    return list(zip(rows.code, rows.ts, values, strict=True)), ignored


def test_the_documented_chirpstack_uplink() -> None:
    uplink = envelope(fixture("chirpstack-up.json"))
    # "2022-07-18T09:34:15.775023242+00:00": nanoseconds truncated to microseconds.
    expected = datetime(2022, 7, 18, 9, 34, 15, 775023, tzinfo=UTC).timestamp()
    assert uplink == Uplink("0101010101010101", expected, 0, None)  # no fCnt member: 0 (proto3 JSON)
    assert round(uplink.time_s * 1e6) % 1_000_000 == 775023  # type: ignore[operator]
    assert envelope(chirpstack_uplink(fcnt=42)).fcnt == 42
    assert envelope(chirpstack_uplink(time=None)).time_s is None
    assert envelope(chirpstack_uplink()).output == {"temp": 22.5}


def test_the_documented_things_stack_uplinks() -> None:
    uplink = envelope(fixture("tts-up.json"), TTS)
    # uplink_message.received_at ("...45.789585559Z") wins over the top-level received_at ("...46.014773143Z").
    assert uplink.time_s == datetime(2020, 2, 12, 15, 15, 45, 789585, tzinfo=UTC).timestamp()
    assert uplink.dev_eui == "0004a30b001c0530"
    assert uplink.fcnt == 1
    assert uplink.output == {"temperature": 1.0, "luminosity": 0.64}
    bare = envelope(fixture("tts-up-mqtt.json"), TTS)  # no received_at, no f_cnt, no decoded_payload
    assert bare == Uplink("4200000000000000", None, 0, None)
    message = orjson.loads(tts_uplink())
    del message["uplink_message"]["received_at"]
    assert (
        envelope(orjson.dumps(message), TTS).time_s == datetime(2020, 2, 12, 15, 15, 46, 14773, tzinfo=UTC).timestamp()
    )


def test_rfc3339_times() -> None:
    assert rfc3339_seconds("2022-07-18T09:34:15.000000999+00:00") == rfc3339_seconds("2022-07-18T09:34:15Z")
    assert rfc3339_seconds("2022-07-18T16:34:15.9999999+07:00") == rfc3339_seconds("2022-07-18T09:34:15.999999Z")
    assert rfc3339_seconds("2022-07-18T09:34:15") is None  # no offset
    assert rfc3339_seconds("yesterday") is None


@pytest.mark.parametrize(
    ("payload", "source", "reason"),
    [
        pytest.param(b"x" * (256 * 1024 + 1), CS, R.PAYLOAD_TOO_LARGE, id="too-large"),
        pytest.param(b'{"deviceInfo": {"devEui": "\xff"}}', CS, R.INVALID_UTF8, id="utf8"),
        pytest.param(b'{"deviceInfo": {}, "object": {"temp": NaN}}', CS, R.NON_FINITE_VALUE, id="nan-token"),
        pytest.param(fixture("chirpstack-up.json")[:200], CS, R.INVALID_JSON, id="truncated"),
        pytest.param(
            b'{"deviceInfo": {"devEui": "0101010101010101"}, "fCnt": 1, "fCnt": 2}', CS, R.DUPLICATE_KEY, id="duplicate"
        ),
        pytest.param(
            b'{"deviceInfo":{"devEui":"0101010101010101"},"fCnt":1,"fCnt":2}',
            CS,
            R.DUPLICATE_KEY,
            id="compact-duplicate",
        ),
        pytest.param(b"[1, 2]", CS, R.INVALID_SHAPE, id="not-an-object"),
        pytest.param(fixture("tts-up.json"), CS, R.INVALID_SHAPE, id="tts-payload-on-chirpstack-topic"),
        pytest.param(fixture("chirpstack-up.json"), TTS, R.INVALID_SHAPE, id="chirpstack-payload-on-tts-topic"),
        pytest.param(chirpstack_uplink("01010101"), CS, R.INVALID_SHAPE, id="short-dev-eui"),
        pytest.param(chirpstack_uplink(time="18/07/2022"), CS, R.INVALID_SHAPE, id="bad-time"),
        pytest.param(chirpstack_uplink(time="2022-07-18T09:34:15"), CS, R.INVALID_SHAPE, id="naive-time"),
        pytest.param(
            chirpstack_uplink(output={"temp": 1}).replace(b'"object"', b'"fCnt":-1,"object"'),
            CS,
            R.INVALID_SHAPE,
            id="negative-fcnt",
        ),
        pytest.param(
            chirpstack_uplink(output={"temp": 1}).replace(b'{"temp":1}', b"[22.5]"),
            CS,
            R.INVALID_SHAPE,
            id="object-not-an-object",
        ),
    ],
)
def test_envelope_rejections(payload: bytes, source: UplinkSource, reason: RejectionReason) -> None:
    parsed = parse_uplink(payload, source, Limits())
    assert isinstance(parsed, Rejection), parsed
    assert parsed.reason is reason, parsed.detail


def test_an_uplink_naming_no_dev_eui_is_left_to_the_registry_check() -> None:
    message = orjson.loads(tts_uplink())
    del message["end_device_ids"]["dev_eui"]  # an ABP device registered without one
    assert envelope(orjson.dumps(message), TTS).dev_eui is None


def test_codec_output_to_readings() -> None:
    ts = RECEIVED - 60
    temp, no2 = QUANTITIES["temp"].code, QUANTITIES["no2"].code
    assert readings({"temp": 22.5}) == ([(temp, ts, 22.5)], 0)
    # Other members (battery, signal, nested objects, strings) are ignored and counted.
    output = {"temp": 22.5, "battery": 3.6, "status": "ok", "gps": {"lat": 1}, "pm25": "12.5"}
    assert readings(output) == ([(temp, ts, 22.5), (QUANTITIES["pm25"].code, ts, 12.5)], 3)
    # The codec's own time wins: Unix seconds or RFC 3339.
    assert readings({"temp": 1, "ts": 1_795_852_000})[0] == [(temp, 1_795_852_000.0, 1.0)]
    assert readings({"temp": 1, "ts": "2026-11-28T14:46:40+07:00"})[0] == [(temp, 1_795_852_000.0, 1.0)]
    # A field map: names, units, a nested member through a JSON Pointer, a member left out on purpose.
    field_map = {
        "temperature": "temp",
        "no2_ppb": {"quantity": "no2", "unit": "ppb"},
        "/air/pm~110": "pm10",
        "pm25": None,
    }
    output = {"temperature": 21.0, "no2_ppb": 24.45, "air": {"pm/10": 30, "pm1": 4}, "pm25": 9.0, "luminosity": 0.6}
    found, ignored = readings(output, field_map=field_map)
    assert ignored == 2  # pm25 (mapped to nothing) and luminosity; "air" is read through the pointer
    assert found == [(temp, ts, 21.0), (no2, ts, pytest.approx(46.0055)), (QUANTITIES["pm10"].code, ts, 30.0)]
    # A null member is a codec saying "no value": ignored, not refused.
    assert readings({"temp": 20.0, "rh": None}) == ([(temp, ts, 20.0)], 1)


@pytest.mark.parametrize(
    ("output", "kind", "reason"),
    [
        pytest.param(None, Kind.AIR, R.UNDECODED_PAYLOAD, id="no-codec"),
        pytest.param({}, Kind.AIR, R.NO_READINGS, id="empty-output"),
        pytest.param({"battery": 3.6, "luminosity": 0.64}, Kind.AIR, R.NO_READINGS, id="nothing-maps"),
        pytest.param({"temp": 20, "speed": 40}, Kind.AIR, R.KIND_MISMATCH, id="other-kind"),
        pytest.param({"kr": 12, "temp": 20}, Kind.TRAFFIC, R.KIND_MISMATCH, id="other-kind-traffic"),
        pytest.param({"temp": "warm"}, Kind.AIR, R.INVALID_SHAPE, id="not-a-number"),
        pytest.param({"temp": True}, Kind.AIR, R.INVALID_SHAPE, id="boolean"),
        pytest.param({"temp": {"value": 20}}, Kind.AIR, R.INVALID_SHAPE, id="nested-value"),
        pytest.param({"temp": 20, "ts": "tomorrow"}, Kind.AIR, R.INVALID_SHAPE, id="bad-ts"),
        pytest.param({"temp": "NaN", "speed": 3}, Kind.AIR, R.NON_FINITE_VALUE, id="nan-first"),
        pytest.param({"speed": 3, "temp": "x"}, Kind.AIR, R.INVALID_SHAPE, id="shape-before-kind"),
    ],
)
def test_codec_output_rejections(output: dict[str, Any] | None, kind: Kind, reason: RejectionReason) -> None:
    assert readings(output, kind=kind) == (reason, 0)


def test_topics_of_each_source() -> None:
    topics = UplinkTopics([(CS, "application/+/device/+/event/+"), (TTS, "v3/#")])
    assert topics.classify(chirpstack_topic("0101010101010101")) == UplinkTopic(CS, True)
    assert topics.classify(chirpstack_topic("0101010101010101", "join")) == UplinkTopic(CS, False)
    assert topics.classify(tts_topic("dev1")) == UplinkTopic(TTS, True)
    assert topics.classify(tts_topic("dev1", "down/ack")) == UplinkTopic(TTS, False)
    assert topics.classify("v3/app1@ttn/devices/dev1/join") == UplinkTopic(TTS, False)
    assert topics.classify("livinglab/v1/jakarta/air/aq-1") is None
    assert filter_matches("v3/+/devices/+/up", "v3/app1@ttn/devices/eui-0004a30b001c0530/up")
    assert not filter_matches("v3/+/devices/+/up", "v3/app1/devices/dev1/up/extra")
    assert not filter_matches("#", "$SYS/broker/uptime")
    for bad in ("", "a/b#", "a/#/b", "$share/g/a", "a+/b"):
        with pytest.raises(ValueError, match="topic filter"):
            check_filter(bad)


def test_frame_counter_gaps() -> None:
    assert count_gaps(None, [10, 11, 14, 14, 15]) == (15, [0, 0, 2, 0, 0])
    assert count_gaps(1015, [1013]) == (1015, [0])  # late: counted missing when a later one came, stays so
    assert count_gaps(400_000, [0, 1, 3]) == (3, [0, 0, 1])  # a rejoin starts the counter again
    assert count_gaps(400_000, [20]) == (20, [0])  # a reboot whose first uplinks were lost
    assert count_gaps(9, [2, 10]) == (10, [0, 7])  # a new session after 9 frames; 3..9 of it missed


@settings(max_examples=300, deadline=None)
@given(
    last=st.none() | st.integers(0, 2**32 - 1),
    counters=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), min_size=1, max_size=12),
    increasing=st.booleans(),
)
def test_frame_counter_gaps_in_whole_arrays_as_one_at_a_time(
    last: int | None, counters: list[int], increasing: bool
) -> None:
    if increasing:  # the usual run, which `_gaps` takes in whole arrays
        counters = sorted(set(counters))
    expected_last, expected = count_gaps(last, counters)
    found_last, found = _gaps(last, np.array(counters, dtype=np.int64))
    assert (found_last, [int(n) for n in found]) == (expected_last, expected)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(output=st.dictionaries(st.sampled_from(["temp", "rh", "pm25", "speed", "ts", "x", "/a"]), json_values))
def test_decoding_never_raises_and_keeps_only_numbers(output: dict[str, Any]) -> None:
    field_map = {"x": "rh", "/a": None, "/x/0": "pm10"}
    found, _ = readings(output, field_map=field_map)
    if not isinstance(found, RejectionReason):
        assert all(isinstance(value, float) for _, _, value in found)
    payload = chirpstack_uplink(output=output)
    assert isinstance(parse_uplink(payload, CS, Limits()), Uplink | Rejection)


class _Members(list):  # type: ignore[type-arg]
    """The members of a JSON object as written, names possibly repeated."""


def _json_text(value: Any) -> str:
    if isinstance(value, _Members):
        return "{" + ",".join(f"{orjson.dumps(k).decode()}:{_json_text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return orjson.dumps(value).decode()


_names = st.sampled_from(["a", "b", "fCnt", "x:y", "devEui", "object", ""])
_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "a:b", "::", "2022-07-18T09:34:15Z", 'q"uote', "back\\slash", "é"]),
    lambda children: st.lists(children, max_size=3) | st.lists(st.tuples(_names, children), max_size=4).map(_Members),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.lists(st.tuples(_names, _documents), max_size=5),
    ids=st.lists(st.tuples(_names, _documents), max_size=2),
    source=st.sampled_from([CS, TTS]),
)
def test_a_repeated_member_anywhere_is_refused_as_the_exact_scan_finds(
    extra: list[tuple[str, Any]], ids: list[tuple[str, Any]], source: UplinkSource
) -> None:
    """The cheap count that rules repeats out never misses one the exact scan finds, wherever it is."""
    if source is CS:
        members = [("deviceInfo", _Members([("devEui", "0101010101010101"), *ids])), ("fCnt", 3), *extra]
    else:
        device = _Members([("dev_eui", "0101010101010101"), *ids])
        members = [("end_device_ids", device), ("uplink_message", _Members([("f_cnt", 3), *extra]))]
    payload = _json_text(_Members(members)).encode()
    parsed = parse_uplink(payload, source, Limits())
    repeated = isinstance(parsed, Rejection) and parsed.reason is R.DUPLICATE_KEY
    assert repeated == (find_duplicate_key(payload) is not None), payload


def test_a_refused_source_leaves_the_device_topics_served() -> None:
    """A broker whose ACL refuses a LoRaWAN filter (Mosquitto's dynamic security plugin does, at subscription time)
    still serves the device topics; the refused filter is reported (and /health reads it)."""
    link = BrokerLink(
        MqttUrl.parse("mqtt://127.0.0.1:1"), protocol="5", client_id="t", prefix="livinglab/v1",
        inbox=Inbox(max_messages=10, max_bytes=1000, max_qos0_bytes=1000), shared_group="ingest",
        extra_filters=["application/+/device/+/event/up", "v3/+/devices/+/up"],
    )  # fmt: skip
    assert link.filters == [
        "$share/ingest/livinglab/v1/+/+/+",
        "$share/ingest/application/+/device/+/event/up",
        "$share/ingest/v3/+/devices/+/up",
    ]
    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    link._on_subscribe(link.client, None, 1, [granted, refused, granted], None)
    assert link.subscribed.is_set()
    assert link.refused_filters == ["$share/ingest/application/+/device/+/event/up"]
    link.subscribed.clear()
    link._on_subscribe(link.client, None, 2, [refused, granted, granted], None)
    assert not link.subscribed.is_set()  # without the device topics there is nothing to serve


class _Directory:
    """A registry of one LoRaWAN sensor, as the batch builder sees it."""

    def __init__(self) -> None:
        self.entry = entry()

    def get(self, sensor_id: str) -> RegistryEntry | None:
        return None

    def resolve_missing(self, sensor_ids: Any) -> None:
        pass

    def get_by_dev_eui(self, dev_eui: str) -> RegistryEntry | None:
        return self.entry if dev_eui == self.entry.dev_eui else None

    def resolve_missing_dev_euis(self, dev_euis: Any) -> None:
        pass


def test_a_retained_uplink_is_refused_first_and_attributed_to_its_sensor() -> None:
    builder = BatchBuilder(
        prefix="livinglab/v1", sensors=_Directory(), limits=Limits(),
        uplink_topics=UplinkTopics([(CS, "application/+/device/+/event/+")]),
    )  # fmt: skip
    topic = chirpstack_topic("0101010101010101")
    known = chirpstack_uplink("0101010101010101", {"pm25": 41.3}, fcnt=9, time=None)  # the time of receipt
    unknown = chirpstack_uplink("0202020202020202", {"pm25": 41.3}, fcnt=9)
    messages = [
        Message(topic, known, mid=1, qos=1, received_at_s=RECEIVED, retained=True),
        Message(topic, unknown, mid=2, qos=1, received_at_s=RECEIVED, retained=True),
        Message(topic, b"{", mid=3, qos=1, received_at_s=RECEIVED, retained=True),
        Message(topic, known, mid=4, qos=1, received_at_s=RECEIVED),
    ]
    batch = builder.build(messages)
    assert {i: r.reason for i, r in batch.rejections.items()} == dict.fromkeys(range(3), R.RETAINED_MESSAGE)
    assert batch.sensor_key.tolist() == [7, -1, -1, 7]
    assert [t.sensor_id if t else None for t in batch.topics] == ["lora-1", None, None, "lora-1"]
    assert batch.fcnt is not None
    assert batch.fcnt.tolist() == [-1, -1, -1, 9]  # a retained copy's counter is an old one
    assert batch.rows.msg.tolist() == [3]
