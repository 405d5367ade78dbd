"""The topics of LoRaWAN network servers (CONTRACT.md section 6) and how a received topic is told apart.

- ChirpStack v4's MQTT integration publishes every event of a device on
  `application/{application_id}/device/{dev_eui}/event/{event}` (`up`, `join`, `status`, `ack`, `txack`, `log`,
  `location`, `integration`); its downlink commands go to `.../command/down`.
- The Things Stack v3's MQTT server publishes on `v3/{application_id}[@{tenant_id}]/devices/{device_id}/{event}`
  (`up`, `join`, `down/queued`, `down/sent`, `down/ack`, `down/nack`, `down/failed`, `service/data`,
  `location/solved`).

Each source is subscribed with its own topic filter (by default the uplinks alone). A topic the filter matches is
an uplink when its last level is `up`; anything else it matches (an operator may subscribe to `application/#`) is
another event of the server: not a reading, acknowledged and counted, never rejected. The device is named inside the
payload, so the topic itself is never refused.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

#: The last topic level of an uplink, for both servers.
UPLINK_EVENT = "up"


class UplinkSource(enum.StrEnum):
    """A LoRaWAN network server whose MQTT JSON the ingester reads."""

    CHIRPSTACK = "chirpstack"
    TTS = "tts"


#: The default topic filter of each source: its uplinks.
DEFAULT_FILTERS: dict[UplinkSource, str] = {
    UplinkSource.CHIRPSTACK: "application/+/device/+/event/up",
    UplinkSource.TTS: "v3/+/devices/+/up",
}


@dataclass(frozen=True, slots=True)
class UplinkTopic:
    """A topic of a LoRaWAN source: which server, and whether it carries an uplink (else another event)."""

    source: UplinkSource
    uplink: bool


def check_filter(text: str) -> str:
    """A topic filter as MQTT allows it (`+` a whole level, `#` the whole last level), without `$share/`."""
    levels = text.split("/")
    if not text or "\x00" in text or text.startswith("$"):
        raise ValueError(f"{text!r} is not a topic filter (shared subscriptions come from LIVINGLAB_SHARED_GROUP)")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            raise ValueError(f"{text!r} is not a topic filter: '+' and '#' must each fill a level, '#' the last")
    return text


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (MQTT 3.1.1 section 4.7)."""
    if topic.startswith("$"):
        return False
    pattern = topic_filter.split("/")
    levels = topic.split("/")
    for i, part in enumerate(pattern):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(pattern)


class UplinkTopics:
    """The LoRaWAN sources an ingester listens to, each with its topic filter, and the parsed-topic cache."""

    def __init__(self, filters: Sequence[tuple[UplinkSource, str]], max_entries: int = 100_000) -> None:
        self.filters = tuple((source, check_filter(f)) for source, f in filters)
        self.max_entries = max_entries
        self._seen: dict[str, UplinkTopic | None] = {}

    def __bool__(self) -> bool:
        return bool(self.filters)

    def classify(self, topic: str) -> UplinkTopic | None:
        """The source whose filter matches `topic` (the first listed), or None when none does."""
        if topic in self._seen:
            return self._seen[topic]
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        found = self._seen[topic] = next(
            (
                UplinkTopic(source, topic.rsplit("/", 1)[-1] == UPLINK_EVENT)
                for source, f in self.filters
                if filter_matches(f, topic)
            ),
            None,
        )
        return found
