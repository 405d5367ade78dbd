"""Device topics: `{prefix}/{city}/{kind}/{sensor_id}` (CONTRACT.md section 1)."""

from __future__ import annotations

from dataclasses import dataclass

from livinglab.domain import IDENTIFIER_RE, Kind


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    city: str
    kind: Kind
    sensor_id: str

    def errors_topic(self, prefix: str) -> str:
        return f"{prefix}/{self.city}/{self.kind.value}/{self.sensor_id}/errors"


def parse_topic(topic: str, prefix: str) -> DeviceTopic | None:
    """The parts of a device topic, or None when it does not follow the grammar."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 3:
        return None
    city, kind, sensor_id = parts
    if not IDENTIFIER_RE.match(city) or not IDENTIFIER_RE.match(sensor_id):
        return None
    try:
        return DeviceTopic(city, Kind(kind), sensor_id)
    except ValueError:
        return None


def subscription(prefix: str, shared_group: str | None = None) -> str:
    """The topic filter an ingester subscribes to."""
    base = f"{prefix}/+/+/+"
    return f"$share/{shared_group}/{base}" if shared_group else base
