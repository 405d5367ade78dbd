"""Rejection notices: tell a device, on `{prefix}/{city}/{kind}/{sensor_id}/errors`, why its message was refused.

Notices are QoS 0 and not retained (CONTRACT.md section 1), published after the batch committed, at most one per
device per `interval_s`: a device stuck in a loop of bad messages must not turn the ingester into a flood source.
The payload is `{"reason": "<code>", "detail": "<text>", "received_at": "<ISO 8601>"}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import orjson

from ingest.outcome import Rejection
from ingest.topics import DeviceTopic

#: Devices remembered at most; beyond that the table starts over (worst case: one extra notice per device).
_MAX_DEVICES = 100_000


def notice_payload(rejection: Rejection, received_at_s: float) -> bytes:
    received_at = datetime.fromtimestamp(received_at_s, tz=UTC).isoformat(timespec="milliseconds")
    return orjson.dumps(
        {
            "reason": rejection.reason.value,
            "detail": rejection.detail,
            "received_at": received_at.replace("+00:00", "Z"),
        }
    )


class RejectionNotices:
    """Rate-limited publication of rejection notices through `publish(topic, payload)`."""

    def __init__(self, prefix: str, publish: Callable[[str, bytes], None], *, interval_s: float = 5.0) -> None:
        self.prefix = prefix
        self.publish = publish
        self.interval_s = interval_s
        self._last_sent: dict[str, float] = {}
        self.sent = 0
        self.suppressed = 0

    def send(self, rejected: Iterable[tuple[DeviceTopic | None, Rejection, float]]) -> None:
        """One notice per (topic, rejection, received_at) whose topic parsed, unless its device heard one lately."""
        now = time.monotonic()
        for topic, rejection, received_at_s in rejected:
            if topic is None:
                continue
            errors_topic = topic.errors_topic(self.prefix)
            if now - self._last_sent.get(errors_topic, -1e18) < self.interval_s:
                self.suppressed += 1
                continue
            if len(self._last_sent) >= _MAX_DEVICES:
                self._last_sent.clear()
            self._last_sent[errors_topic] = now
            self.publish(errors_topic, notice_payload(rejection, received_at_s))
            self.sent += 1
