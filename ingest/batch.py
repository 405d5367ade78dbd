"""From received messages to a batch: topic, registry and payload checks, and the batch's checked readings.

Everything here is decided without writing anything; `ingest.writer` then stores the batch in one transaction
(and may still reject messages whose readings conflict with what is stored). Uplinks of LoRaWAN network servers
(`ingest.uplinks`) become rows of the same batch, so storage, duplicates, rejections and counters are one path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ingest._plain import PLAIN_PATHS
from ingest.decode import PayloadDecoder
from ingest.outcome import Rejection
from ingest.rows import Limits, RowBuffer, Rows, check_rows
from ingest.topics import DeviceTopic, TopicCache
from ingest.uplink_topics import UplinkSource, UplinkTopic, UplinkTopics
from ingest.uplinks import Uplink, decode_uplink, parse_uplink
from livinglab.domain import RejectionReason
from livinglab.storage.registry import RegistryEntry

#: Decoding yields the GIL after this many readings or messages (about half a millisecond of work).
_YIELD_EVERY_ROWS = 500
_YIELD_EVERY_MESSAGES = 128


@dataclass(slots=True)
class Message:
    """One received MQTT message. `generation` counts broker connections: acknowledgements go only to the current.
    `retained`: the broker sent it because it was retained (the RETAIN flag of a delivered PUBLISH)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at_s: float
    generation: int = 0
    retained: bool = False


class SensorLookup(Protocol):
    """The registry as the batch builder sees it."""

    def get(self, sensor_id: str) -> RegistryEntry | None: ...

    def resolve_missing(self, sensor_ids: Collection[str]) -> None:
        """Look these ids up in the database now (a sensor created a moment ago)."""

    def get_by_dev_eui(self, dev_eui: str) -> RegistryEntry | None: ...

    def resolve_missing_dev_euis(self, dev_euis: Collection[str]) -> None:
        """Look these DevEUIs up in the database now."""


@dataclass(slots=True)
class Batch:
    """The messages of one batch and what was decided about them before storage.

    Per message (index i): `received_at_s[i]`; `sensor_key[i]`, -1 when no registered sensor has the topic's id;
    `topics[i]`, None when the topic does not parse. `rows` holds the readings that passed every check, `rows.msg`
    pointing back at their message; `rejections` the messages rejected so far.

    LoRaWAN uplinks of a known sensor get that sensor's section 1 topic in `topics[i]` (its errors topic and the
    rejection's city come from it), their frame counter in `fcnt[i]` (-1 for every other message) and the number of
    codec members that mapped to nothing in `ignored[i]`. `uplinks` and `other_events` count, per source, the
    uplinks and the other events of network servers that were not readings.
    """

    messages: Sequence[Message]
    received_at_s: npt.NDArray[np.float64]
    sensor_key: npt.NDArray[np.int32]
    topics: list[DeviceTopic | None]
    rows: Rows
    rejections: dict[int, Rejection]
    fcnt: npt.NDArray[np.int64] | None = None
    ignored: npt.NDArray[np.int64] | None = None
    uplinks: Counter[str] = field(default_factory=Counter)
    other_events: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def row_sensor_key(self) -> npt.NDArray[np.int32]:
        return self.sensor_key[self.rows.msg]


class BatchBuilder:
    """Checks messages in contract order: topic, sensor, kind, then payload (see `ingest.decode`)."""

    def __init__(
        self,
        *,
        prefix: str,
        sensors: SensorLookup,
        limits: Limits,
        plain_paths: AbstractSet[str] = PLAIN_PATHS,
        uplink_topics: UplinkTopics | None = None,
    ) -> None:
        self.topics = TopicCache(prefix)
        self.uplink_topics = uplink_topics or UplinkTopics(())
        self.sensors = sensors
        self.limits = limits
        self.plain_paths = plain_paths

    def _parse_topic(self, topic: str) -> DeviceTopic | UplinkTopic | Rejection:
        parsed = self.topics.parse(topic)
        if type(parsed) is DeviceTopic or not self.uplink_topics:
            return parsed
        return self.uplink_topics.classify(topic) or parsed

    def _identify(
        self, topic: DeviceTopic | Rejection, *, retained: bool = False
    ) -> tuple[RegistryEntry | None, Rejection | None]:
        """The registered sensor a topic names (also when the topic gets its city or kind wrong), and why the
        message cannot be accepted, if it cannot.

        A retained message is refused first: the broker sends a retained copy to every new subscription (a new
        ingester's included), so accepting it would store a reading again, at a new time if its time is relative."""
        entry = self.sensors.get(topic.sensor_id) if isinstance(topic, DeviceTopic) else None
        if retained:
            return entry, Rejection(
                RejectionReason.RETAINED_MESSAGE, "a retained message (devices must publish without the retain flag)"
            )
        if isinstance(topic, Rejection):
            return None, topic
        if entry is None:
            return None, Rejection(RejectionReason.UNKNOWN_SENSOR, f"no sensor {topic.sensor_id!r} in the registry")
        if entry.city != topic.city:
            return entry, Rejection(
                RejectionReason.UNKNOWN_SENSOR,
                f"sensor {topic.sensor_id!r} is registered in city {entry.city!r}, not {topic.city!r}",
            )
        if entry.kind is not topic.kind:
            return entry, Rejection(
                RejectionReason.KIND_MISMATCH,
                f"sensor {topic.sensor_id!r} is registered as {entry.kind.value}, the topic says {topic.kind.value}",
            )
        return entry, None

    def build(self, messages: Sequence[Message]) -> Batch:
        n = len(messages)
        received_at_s = np.fromiter((m.received_at_s for m in messages), dtype=np.float64, count=n)
        sensor_key = np.full(n, -1, dtype=np.int32)
        topics: list[DeviceTopic | None] = [None] * n
        parsed = [self._parse_topic(m.topic) for m in messages]
        get = self.sensors.get
        missing = {t.sensor_id for t in parsed if type(t) is DeviceTopic and get(t.sensor_id) is None}
        if missing:
            self.sensors.resolve_missing(missing)
        lorawan = _LorawanPart(self, messages, parsed) if any(type(t) is UplinkTopic for t in parsed) else None
        rejections: dict[int, Rejection] = {}
        rows = RowBuffer()
        decode = PayloadDecoder(rows, self.limits, paths=self.plain_paths).decode
        yield_at = _YIELD_EVERY_ROWS
        for i, (message, topic) in enumerate(zip(messages, parsed, strict=True)):
            if len(rows.code) >= yield_at or not i % _YIELD_EVERY_MESSAGES:
                # Let the writing thread have the GIL: it needs it only briefly between COPY chunks, but would
                # otherwise wait out the interpreter's 5 ms switch interval each time, stalling the database.
                time.sleep(0)
                yield_at = len(rows.code) + _YIELD_EVERY_ROWS
            if isinstance(topic, UplinkTopic):
                assert lorawan is not None
                rejection = lorawan.decode(i, topic, rows, sensor_key, topics)
                if rejection is not None:
                    rejections[i] = rejection
                continue
            if isinstance(topic, DeviceTopic):
                topics[i] = topic
            entry, rejection = self._identify(topic, retained=message.retained)
            if entry is not None:
                sensor_key[i] = entry.sensor_key  # counted for the sensor even when rejected
            if rejection is not None:
                rejections[i] = rejection
                continue
            assert entry is not None
            rejection = decode(message.payload, kind=entry.kind, received_at_s=message.received_at_s, msg=i)
            if rejection is not None:
                rejections[i] = rejection
        checked, failed = check_rows(rows, received_at_s, self.limits)
        rejections.update(failed)
        batch = Batch(messages, received_at_s, sensor_key, topics, checked, rejections)
        if lorawan is not None:
            lorawan.finish(batch)
        return batch


class _LorawanPart:
    """The LoRaWAN uplinks of one batch: their envelopes are read first, so that every DevEUI the registry lacks is
    looked up at once, then each uplink is decoded in its turn (`BatchBuilder.build`)."""

    def __init__(self, builder: BatchBuilder, messages: Sequence[Message], parsed: Sequence[object]) -> None:
        self.limits = builder.limits
        self.sensors = builder.sensors
        self.device_topics: dict[int, DeviceTopic] = {}  # by sensor key: one per sensor in a batch, shared
        n = len(messages)
        self.fcnt = [-1] * n
        self.ignored = [0] * n
        self.uplinks: Counter[UplinkSource] = Counter()
        self.other_events: Counter[UplinkSource] = Counter()
        self.envelopes: dict[int, Uplink | Rejection] = {}
        #: The sensor of each uplink whose DevEUI the registry knew at once.
        self.entries: dict[int, RegistryEntry] = {}
        missing: set[str] = set()
        get = self.sensors.get_by_dev_eui
        limits = self.limits
        for i, (message, topic) in enumerate(zip(messages, parsed, strict=True)):
            if type(topic) is not UplinkTopic or not topic.uplink:
                continue
            envelope = self.envelopes[i] = parse_uplink(message.payload, topic.source, limits)
            if type(envelope) is Uplink and envelope.dev_eui is not None:
                entry = get(envelope.dev_eui)
                if entry is None:
                    missing.add(envelope.dev_eui)
                else:
                    self.entries[i] = entry
        if missing:
            self.sensors.resolve_missing_dev_euis(missing)
        self.messages = messages

    def decode(
        self,
        i: int,
        topic: UplinkTopic,
        rows: RowBuffer,
        sensor_key: npt.NDArray[np.int32],
        topics: list[DeviceTopic | None],
    ) -> Rejection | None:
        if not topic.uplink:
            self.other_events[topic.source] += 1
            return None
        self.uplinks[topic.source] += 1
        envelope = self.envelopes[i]
        entry: RegistryEntry | None = None
        if type(envelope) is Uplink and envelope.dev_eui is not None:
            entry = self.entries.get(i) or self.sensors.get_by_dev_eui(envelope.dev_eui)
        if entry is not None:
            key = entry.sensor_key
            sensor_key[i] = key  # counted for the sensor even when rejected
            device_topic = self.device_topics.get(key)
            if device_topic is None:
                device_topic = self.device_topics[key] = DeviceTopic(entry.city, entry.kind, entry.sensor_id)
            topics[i] = device_topic
        if self.messages[i].retained:
            # First, as for device messages; its frame counter is an old one, so it is not counted either.
            return Rejection(RejectionReason.RETAINED_MESSAGE, "a retained message (servers must publish without it)")
        if type(envelope) is not Uplink:
            assert isinstance(envelope, Rejection)
            return envelope
        if envelope.dev_eui is None:
            return Rejection(RejectionReason.UNKNOWN_SENSOR, "the uplink names no DevEUI (give the device one)")
        if entry is None:
            detail = f"no sensor with dev_eui {envelope.dev_eui} in the registry"
            return Rejection(RejectionReason.UNKNOWN_SENSOR, detail)
        self.fcnt[i] = envelope.fcnt
        rejection, self.ignored[i] = decode_uplink(
            envelope, entry, rows=rows, msg=i, received_at_s=self.messages[i].received_at_s, limits=self.limits
        )
        return rejection

    def finish(self, batch: Batch) -> None:
        batch.fcnt = np.array(self.fcnt, dtype=np.int64)
        batch.ignored = np.array(self.ignored, dtype=np.int64)
        batch.uplinks = Counter({source.value: n for source, n in self.uplinks.items()})
        batch.other_events = Counter({source.value: n for source, n in self.other_events.items()})
