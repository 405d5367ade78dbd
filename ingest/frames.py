"""Frame-counter gaps of LoRaWAN devices: how many uplinks never arrived, counted per device.

Every uplink carries the device's frame counter (fCnt), one higher for each uplink it transmits. A jump from `last`
to `fcnt > last + 1` means `fcnt - last - 1` uplinks were lost on the way (radio, gateway backhaul, or a QoS 0 hop
such as The Things Stack's MQTT server). The highest counter seen per sensor lives in `lorawan_frames` and is read and
written in each batch's transaction (rows locked in key order), so several ingesters sharing the uplinks count each
gap once.

A counter below the last one is either a new session (a rejoin or a reboot restarts it at 0) or an uplink delivered
late. It is taken as a new session when it is small (below `RESET_BELOW`) or very far behind (more than
`RESET_BEHIND`, LoRaWAN 1.0's MAX_FCNT_GAP); otherwise it is a late or repeated uplink and changes nothing (an uplink
overtaken by a later one has been counted missing when the later one arrived, and stays counted). The first uplink
of a device reveals nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

#: A counter this small, below the last one, starts a new session.
RESET_BELOW = 16
#: A counter this far below the last one starts a new session.
RESET_BEHIND = 16384

_LOCK = "SELECT sensor_key, fcnt FROM lorawan_frames WHERE sensor_key = ANY(%s) ORDER BY sensor_key FOR UPDATE"
# Upserted in key order, so concurrent ingesters lock rows in the same order and cannot deadlock.
_STORE = """
INSERT INTO lorawan_frames AS f (sensor_key, fcnt)
SELECT k, c FROM unnest(%s::int4[], %s::int8[]) AS t (k, c) ORDER BY k
ON CONFLICT (sensor_key) DO UPDATE SET fcnt = excluded.fcnt, updated_at = now()
"""


def next_counter(last: int | None, fcnt: int) -> tuple[int, int]:
    """(the counter to remember, frames missed) after an uplink with `fcnt` when `last` was the highest seen."""
    if last is None:
        return fcnt, 0
    if fcnt > last:
        return fcnt, fcnt - last - 1
    if fcnt < last and (fcnt < RESET_BELOW or last - fcnt > RESET_BEHIND):
        return fcnt, 0
    return last, 0


def count_gaps(last: int | None, counters: Iterable[int]) -> tuple[int | None, list[int]]:
    """The counter to remember after these uplinks of one device, in arrival order, and the frames each revealed
    missing."""
    missed = []
    for fcnt in counters:
        last, n = next_counter(last, fcnt)
        missed.append(n)
    return last, missed


def _gaps(last: int | None, counters: npt.NDArray[np.int64]) -> tuple[int | None, npt.NDArray[np.int64] | list[int]]:
    """`count_gaps` of one device's counters; the usual run (each counter above the one before, the first above
    `last`) in whole arrays, anything else (a new session, a late uplink) one counter at a time."""
    steps = np.diff(counters)
    first = int(counters[0])
    if (last is None or first > last) and bool((steps > 0).all()):
        gaps = np.empty(counters.size, dtype=np.int64)
        gaps[0] = 0 if last is None else first - last - 1
        gaps[1:] = steps - 1
        return int(counters[-1]), gaps
    return count_gaps(last, counters.tolist())


def record_frames(
    conn: psycopg.Connection[Any], sensor_key: npt.NDArray[np.int32], fcnt: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Frames missed per message of a batch (0 where a message revealed no gap or has no counter, `fcnt` -1), after
    updating the stored counters; inside the caller's transaction."""
    missed = np.zeros(fcnt.size, dtype=np.int64)
    has = np.flatnonzero((fcnt >= 0) & (sensor_key >= 0))
    if not has.size:
        return missed
    # Each device's messages in arrival order (a stable sort by sensor), its counters a slice.
    indices = has[np.argsort(sensor_key[has], kind="stable")]
    sorted_keys = sensor_key[indices]
    counters = fcnt[indices]
    bounds = (np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1).tolist()
    starts, ends = [0, *bounds], [*bounds, int(indices.size)]
    keys = [int(sorted_keys[lo]) for lo in starts]
    stored = dict(conn.execute(_LOCK, (keys,)).fetchall())
    lasts = []
    for key, lo, hi in zip(keys, starts, ends, strict=True):
        last, gaps = _gaps(stored.get(key), counters[lo:hi])
        found = np.asarray(gaps, dtype=np.int64)
        if found.any():
            missed[indices[lo:hi]] = found
        lasts.append(last)
    conn.execute(_STORE, (keys, lasts))
    return missed
