"""Per-sensor tallies of the ingester: counters per sensor and UTC hour (`ingest_counters`) and the latency
histogram (`ingest_latency`), computed per batch with NumPy and written in a batch's transaction.

Under load they are gathered over several batches and written at most every `LIVINGLAB_COUNTERS_FLUSH_S` (and
whenever the ingester runs out of work): with many sensors, upserting a counter row and a histogram row per sensor
for every batch would cost the database more than the readings themselves. Readings, rejections and dirty windows
never wait; a crash loses at most the tallies gathered since the last write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from livinglab.quality import latency_buckets

_COUNT = """
WITH counters AS (
    INSERT INTO ingest_counters AS c (sensor_key, hour, messages, accepted, rejected, duplicates, late, last_seen,
                                      ignored_members, fcnt_gaps, frames_missed)
    SELECT k, to_timestamp(h), m, a, r, d, l, to_timestamp(s), i, g, f
    FROM unnest(%(ck)s::int4[], %(ch)s::float8[], %(cm)s::int8[], %(ca)s::int8[], %(cr)s::int8[], %(cd)s::int8[],
                %(cl)s::int8[], %(cs)s::float8[], %(ci)s::int8[], %(cg)s::int8[], %(cf)s::int8[])
         AS t (k, h, m, a, r, d, l, s, i, g, f)
    ORDER BY k, h
    ON CONFLICT (sensor_key, hour) DO UPDATE SET
        messages = c.messages + excluded.messages,
        accepted = c.accepted + excluded.accepted,
        rejected = c.rejected + excluded.rejected,
        duplicates = c.duplicates + excluded.duplicates,
        late = c.late + excluded.late,
        last_seen = greatest(c.last_seen, excluded.last_seen),
        ignored_members = c.ignored_members + excluded.ignored_members,
        fcnt_gaps = c.fcnt_gaps + excluded.fcnt_gaps,
        frames_missed = c.frames_missed + excluded.frames_missed
)
INSERT INTO ingest_latency AS l (sensor_key, hour, bucket, n)
SELECT k, to_timestamp(h), b, n
FROM unnest(%(lk)s::int4[], %(lh)s::float8[], %(lb)s::int2[], %(ln)s::int8[]) AS t (k, h, b, n)
ORDER BY k, h, b
ON CONFLICT (sensor_key, hour, bucket) DO UPDATE SET n = l.n + excluded.n
"""
# Rows are upserted in key order, so concurrent ingesters lock them in the same order and cannot deadlock.


def group_rows(*columns: npt.NDArray[Any]) -> tuple[list[npt.NDArray[Any]], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Distinct rows of the given columns: (the distinct values per column, sort order, start of each group).

    Groups are the runs of `order`: group g is `order[starts[g]:starts[g + 1]]`.
    """
    order = np.lexsort(columns[::-1])
    sorted_columns = [c[order] for c in columns]
    starts = run_starts(sorted_columns)
    return [c[starts] for c in sorted_columns], order, starts


def run_starts(sorted_columns: list[npt.NDArray[Any]]) -> npt.NDArray[np.intp]:
    """Where each run of equal rows starts, in columns sorted so that equal rows are adjacent."""
    n = sorted_columns[0].size
    change = np.zeros(n, dtype=np.bool_)
    if n:
        change[0] = True
        for c in sorted_columns:
            change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


#: Where each counter sits in a Tallies counter row; `last_seen_s` is a maximum, the others are sums.
MESSAGES, ACCEPTED, REJECTED, DUPLICATES, LATE, LAST_SEEN, IGNORED, FCNT_GAPS, FRAMES_MISSED = range(9)
_SUMS = (MESSAGES, ACCEPTED, REJECTED, DUPLICATES, LATE, IGNORED, FCNT_GAPS, FRAMES_MISSED)
_COLUMNS = ("cm", "ca", "cr", "cd", "cl", "cs", "ci", "cg", "cf")


@dataclass(slots=True)
class Tallies:
    """Counters by (sensor_key, hour index): [messages, accepted, rejected, duplicates, late, last_seen_s,
    ignored members, fcnt gaps, frames missed] (indices named above); latency histogram counts by (sensor_key, hour
    index, bucket). Hour index = Unix seconds // 3600 of the receipt."""

    counters: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    latency: dict[tuple[int, int, int], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counters or self.latency)

    @classmethod
    def of_messages(
        cls,
        sensor_key: npt.NDArray[np.int32],
        received_at_s: npt.NDArray[np.float64],
        accepted: npt.NDArray[np.int64],
        rejected: npt.NDArray[np.int64],
        duplicates: npt.NDArray[np.int64],
        late: npt.NDArray[np.int64],
        ignored: npt.NDArray[np.int64] | None = None,
        frames_missed: npt.NDArray[np.int64] | None = None,
    ) -> Tallies:
        """The counters of one batch, from per-message arrays (messages of unknown sensors have key -1)."""
        known = sensor_key >= 0
        hour = np.floor(received_at_s[known] / 3600.0).astype(np.int64)
        (keys, hours), order, starts = group_rows(sensor_key[known], hour)
        if not starts.size:
            return cls()
        none = np.zeros(sensor_key.size, dtype=np.int64)
        missed = none if frames_missed is None else frames_missed
        columns = (
            np.ones(sensor_key.size, dtype=np.int64), accepted, rejected, duplicates, late,
            none if ignored is None else ignored, (missed > 0).astype(np.int64), missed,
        )  # fmt: skip
        sums = [np.add.reduceat(values[known][order], starts).tolist() for values in columns]
        last_seen = np.maximum.reduceat(received_at_s[known][order], starts).tolist()
        counters = {
            (k, h): [m, a, r, d, lt, s, ig, g, f]
            for k, h, m, a, r, d, lt, ig, g, f, s in zip(keys.tolist(), hours.tolist(), *sums, last_seen, strict=True)
        }
        return cls(counters, {})

    def add_latency(
        self, sensor_key: npt.NDArray[np.int32], received_at_s: npt.NDArray[np.float64], ts_us: npt.NDArray[np.int64]
    ) -> None:
        """Count stored readings into the latency histogram (receipt minus `ts`)."""
        hour = np.floor(received_at_s / 3600.0).astype(np.int64)
        buckets = latency_buckets(received_at_s - ts_us / 1e6).astype(np.int64)
        (keys, hours, bucket), order, starts = group_rows(sensor_key, hour, buckets)
        counts = np.diff(np.append(starts, order.size)).tolist()
        latency = self.latency
        for key, n in zip(zip(keys.tolist(), hours.tolist(), bucket.tolist(), strict=True), counts, strict=True):
            latency[key] = latency.get(key, 0) + n

    def of_replay(self) -> Tallies:
        """These tallies for messages replayed on request: the readings they store count (accepted, duplicates,
        late, latency, ignored codec members), the messages themselves do not, since they were counted (as
        rejected) when they arrived; nor do frame counters, which only live messages advance."""
        counters = {key: [0, a, 0, d, lt, s, ig, 0, 0] for key, (_, a, _, d, lt, s, ig, _, _) in self.counters.items()}
        return Tallies(counters, dict(self.latency))

    def merged(self, other: Tallies) -> Tallies:
        """A new Tallies holding both (neither is changed)."""
        counters = {key: list(values) for key, values in self.counters.items()}
        for key, values in other.counters.items():
            mine = counters.get(key)
            if mine is None:
                counters[key] = list(values)
            else:
                for i in _SUMS:
                    mine[i] += values[i]
                mine[LAST_SEEN] = max(mine[LAST_SEEN], values[LAST_SEEN])
        latency = dict(self.latency)
        for bucket, n in other.latency.items():
            latency[bucket] = latency.get(bucket, 0) + n
        return Tallies(counters, latency)

    def write(self, conn: Any) -> None:
        """Upsert into ingest_counters and ingest_latency (inside the caller's transaction)."""
        if not self:
            return
        counters = sorted(self.counters.items())
        latency = sorted(self.latency.items())
        params: dict[str, Any] = {
            "ck": [k for (k, _), _ in counters],
            "ch": [h * 3600.0 for (_, h), _ in counters],
            "lk": [k for (k, _, _), _ in latency],
            "lh": [h * 3600.0 for (_, h, _), _ in latency],
            "lb": [b for (_, _, b), _ in latency],
            "ln": [n for _, n in latency],
        }
        for i, name in enumerate(_COLUMNS):
            params[name] = [values[i] if i == LAST_SEEN else int(values[i]) for _, values in counters]
        conn.execute(_COUNT, params)
