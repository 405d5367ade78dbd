"""The quota of rejected payload bytes: how much of the disk one device can fill with messages the ingester refuses.

Every rejected message is kept in `rejected` (its topic, reason, detail and time), with its payload up to
`LIVINGLAB_REJECTED_PAYLOAD_CAP_BYTES` so that it can be inspected and replayed. Without a bound, a device sending
large invalid payloads as fast as it can would write them to disk at that rate for the whole retention period. So
the payload bytes kept are bounded per quota key and period (`LIVINGLAB_REJECTED_QUOTA_BYTES` per
`LIVINGLAB_REJECTED_QUOTA_PERIOD_S`, by default 1 MiB a UTC day); beyond it a rejection is still stored, counted
and announced, only without its payload (`payload_dropped`), and the drop is counted: per sensor and hour in
`rejected_drops` (the quality page), and in the ingester's metrics.

Quota keys: the registered sensor the topic names (also when the message is rejected for naming the wrong city or
kind), else the topic's city level (messages for unregistered sensors and unparsable topics under a city: with the
shipped broker access control only that city's gateway can publish those), else one shared key for the rest.
MQTT does not tell a subscriber which client published a message, so the topic is what identifies the sender.

The state lives in `rejected_quota` (one row per key, reset when a new period starts), updated in the batch's
transaction, so any number of ingesters share one quota and a rolled-back batch charges nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.topics import DeviceTopic
from livinglab.domain import IDENTIFIER_RE

#: The key of messages that name neither a registered sensor nor a city.
UNATTRIBUTED = "unattributed"

_OPEN = """
INSERT INTO rejected_quota AS q (quota_key, period_start)
SELECT k, to_timestamp(%(period)s) FROM unnest(%(keys)s::text[]) AS k ORDER BY k
ON CONFLICT (quota_key) DO UPDATE SET
    period_start = excluded.period_start,
    kept_bytes = CASE WHEN q.period_start = excluded.period_start THEN q.kept_bytes ELSE 0 END,
    dropped_messages = CASE WHEN q.period_start = excluded.period_start THEN q.dropped_messages ELSE 0 END,
    dropped_bytes = CASE WHEN q.period_start = excluded.period_start THEN q.dropped_bytes ELSE 0 END
RETURNING quota_key, kept_bytes
"""
# Rows are locked in key order (the ORDER BY above), so concurrent ingesters cannot deadlock on them.
_CHARGE = """
UPDATE rejected_quota AS q SET
    kept_bytes = q.kept_bytes + c.kept,
    dropped_messages = q.dropped_messages + c.dm,
    dropped_bytes = q.dropped_bytes + c.db
FROM unnest(%(keys)s::text[], %(kept)s::int8[], %(dm)s::int8[], %(db)s::int8[]) AS c (k, kept, dm, db)
WHERE q.quota_key = c.k
"""
_COUNT_DROPS = """
INSERT INTO rejected_drops AS d (sensor_key, hour, messages, bytes)
SELECT k, to_timestamp(h), m, b
FROM unnest(%(k)s::int4[], %(h)s::float8[], %(m)s::int8[], %(b)s::int8[]) AS t (k, h, m, b)
ORDER BY k, h
ON CONFLICT (sensor_key, hour) DO UPDATE SET
    messages = d.messages + excluded.messages,
    bytes = d.bytes + excluded.bytes
"""


@dataclass(frozen=True, slots=True)
class PayloadClaim:
    """A rejected message that would keep `size` payload bytes."""

    topic: str
    parsed: DeviceTopic | None
    sensor_key: int
    received_at_s: float
    size: int


@dataclass(frozen=True, slots=True)
class Allotment:
    """Which claims keep their payload, and the bytes of those that do not."""

    kept: list[bool]
    dropped: int
    dropped_bytes: int


class RejectedQuota:
    """Decides, inside a batch's transaction, which rejected payloads are kept (see the module docstring)."""

    def __init__(self, *, prefix: str, quota_bytes: int, period_s: int) -> None:
        self.prefix = prefix
        self.quota_bytes = quota_bytes
        self.period_s = period_s

    def key(self, claim: PayloadClaim) -> str:
        if claim.sensor_key >= 0:
            return f"sensor:{claim.sensor_key}"
        if claim.parsed is not None:
            return f"city:{claim.parsed.city}"
        head = self.prefix + "/"
        if claim.topic.startswith(head):
            city = claim.topic[len(head) :].split("/", 1)[0]
            if IDENTIFIER_RE.match(city):
                return f"city:{city}"
        return UNATTRIBUTED

    def allot(self, conn: Any, claims: Sequence[PayloadClaim], now_s: float) -> Allotment:
        """Charge `claims`, in order, against their keys' quota of the current period; one keeps its payload while
        its key has room for all of it."""
        nonzero = [i for i, c in enumerate(claims) if c.size > 0]
        kept = [True] * len(claims)
        if not nonzero:
            return Allotment(kept, 0, 0)
        keys = [self.key(claims[i]) for i in nonzero]
        period = math.floor(now_s / self.period_s) * self.period_s
        used = dict(conn.execute(_OPEN, {"period": float(period), "keys": sorted(set(keys))}).fetchall())
        kept_bytes: dict[str, int] = defaultdict(int)
        dropped: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        drops_by_hour: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
        for i, key in zip(nonzero, keys, strict=True):
            claim = claims[i]
            if used[key] + kept_bytes[key] + claim.size <= self.quota_bytes:
                kept_bytes[key] += claim.size
                continue
            kept[i] = False
            dropped[key][0] += 1
            dropped[key][1] += claim.size
            if claim.sensor_key >= 0:
                tally = drops_by_hour[(claim.sensor_key, math.floor(claim.received_at_s / 3600))]
                tally[0] += 1
                tally[1] += claim.size
        charged = sorted(set(keys))
        conn.execute(
            _CHARGE,
            {
                "keys": charged,
                "kept": [kept_bytes[k] for k in charged],
                "dm": [dropped[k][0] if k in dropped else 0 for k in charged],
                "db": [dropped[k][1] if k in dropped else 0 for k in charged],
            },
        )
        if drops_by_hour:
            hours = sorted(drops_by_hour.items())
            conn.execute(
                _COUNT_DROPS,
                {
                    "k": [k for (k, _), _ in hours],
                    "h": [h * 3600.0 for (_, h), _ in hours],
                    "m": [m for _, (m, _) in hours],
                    "b": [b for _, (_, b) in hours],
                },
            )
        return Allotment(kept, sum(d[0] for d in dropped.values()), sum(d[1] for d in dropped.values()))
