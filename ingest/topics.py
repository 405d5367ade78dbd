"""Device topics: `{prefix}/{city}/{kind}/{sensor_id}` (CONTRACT.md section 1), and the ingester's subscription."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.outcome import Rejection, quoted
from livinglab.domain import IDENTIFIER_RE, Kind, RejectionReason

#: Suffix of the topic on which a device hears why its messages were rejected.
ERRORS_SUFFIX = "errors"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """The parts of a device topic."""

    city: str
    kind: Kind
    sensor_id: str

    def errors_topic(self, prefix: str) -> str:
        """Where rejection notices for this device go."""
        return f"{prefix}/{self.city}/{self.kind.value}/{self.sensor_id}/{ERRORS_SUFFIX}"


def _invalid(detail: str) -> Rejection:
    return Rejection(RejectionReason.TOPIC_INVALID, detail)


def parse_topic(topic: str, prefix: str) -> DeviceTopic | Rejection:
    """The parts of a device topic, or a `topic_invalid` rejection saying what is wrong with it.

    City and sensor id follow `[a-z0-9][a-z0-9_-]{0,63}` (so no upper case, no non-ASCII, no wildcards) and the
    kind is `air` or `traffic`. Brokers never route a topic with `+` or `#` in it; the parser refuses them anyway.
    """
    head = prefix + "/"
    if not topic.startswith(head):
        return _invalid(f"topic {quoted(topic)} is not under {prefix!r}")
    parts = topic[len(head) :].split("/")
    if len(parts) != 3:
        return _invalid(f"topic {quoted(topic)} has {len(parts)} levels after the prefix, expected city/kind/id")
    city, kind, sensor_id = parts
    if not IDENTIFIER_RE.match(city):
        return _invalid(f"city {quoted(city)} does not match [a-z0-9][a-z0-9_-]{{0,63}}")
    if not IDENTIFIER_RE.match(sensor_id):
        return _invalid(f"sensor id {quoted(sensor_id)} does not match [a-z0-9][a-z0-9_-]{{0,63}}")
    if kind == Kind.AIR.value:
        return DeviceTopic(city, Kind.AIR, sensor_id)
    if kind == Kind.TRAFFIC.value:
        return DeviceTopic(city, Kind.TRAFFIC, sensor_id)
    return _invalid(f"kind {quoted(kind)} is neither air nor traffic")


def subscription(prefix: str, shared_group: str | None = None) -> str:
    """The topic filter an ingester subscribes to: `{prefix}/+/+/+`, through `$share/{group}/` when grouped."""
    return shared(f"{prefix}/+/+/+", shared_group)


def shared(topic_filter: str, shared_group: str | None) -> str:
    """A topic filter through the shared subscription `$share/{group}/` when grouped, else as it is."""
    return f"$share/{shared_group}/{topic_filter}" if shared_group else topic_filter


class TopicCache:
    """Parsed topics by topic string: devices publish to the same few topics over and over.

    Bounded: when it holds `max_entries`, it starts over (a flood of distinct bad topics cannot grow memory).
    """

    def __init__(self, prefix: str, max_entries: int = 100_000) -> None:
        self.prefix = prefix
        self.max_entries = max_entries
        self._parsed: dict[str, DeviceTopic | Rejection] = {}

    def parse(self, topic: str) -> DeviceTopic | Rejection:
        parsed = self._parsed.get(topic)
        if parsed is None:
            if len(self._parsed) >= self.max_entries:
                self._parsed.clear()
            parsed = self._parsed[topic] = parse_topic(topic, self.prefix)
        return parsed
