"""Which rows of a batch to store, which are exact resends, and which messages carry conflicting duplicates.

A reading is keyed by (sensor, quantity, ts). Messages are judged one after another in arrival order, against what
is stored and what earlier messages of the batch contributed: a key seen with the same value is a duplicate (not
stored again, counted); a key seen with a different value rejects the whole message as `conflicting_duplicate`, and
the first value stays. A rejected message contributes nothing, so a later message is never judged against it.

Only "contested" rows need that sequential walk: rows whose key occurs more than once in the batch or is already
stored. Finding them is one sort of the batch's keys; in the common case there are none and nothing runs per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ingest.outcome import Rejection
from ingest.rows import format_time
from livinglab.domain import QUANTITIES_BY_CODE, RejectionReason

_MISSING = float("nan")  # equal to nothing; stored and received values are finite


@dataclass(frozen=True, slots=True)
class Resolution:
    """Per row: store it (`insert`) or count it as an exact resend (`duplicate`); per message: conflicts."""

    insert: npt.NDArray[np.bool_]
    duplicate: npt.NDArray[np.bool_]
    conflicts: dict[int, Rejection] = field(default_factory=dict)


def key_order(
    sensor: npt.NDArray[np.int32], quantity: npt.NDArray[np.int16], ts_us: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """The rows sorted by key (sensor, quantity, ts); stable, so equal keys keep their arrival order."""
    return np.lexsort((ts_us, quantity, sensor))


def contested_rows(
    sensor: npt.NDArray[np.int32],
    quantity: npt.NDArray[np.int16],
    ts_us: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.bool_]:
    """Rows whose key occurs more than once among the given rows (`order`: their `key_order`, if known)."""
    n = sensor.size
    contested = np.zeros(n, dtype=np.bool_)
    if n < 2:
        return contested
    if order is None:
        order = key_order(sensor, quantity, ts_us)
    s, q, t = sensor[order], quantity[order], ts_us[order]
    same_as_next = (s[1:] == s[:-1]) & (q[1:] == q[:-1]) & (t[1:] == t[:-1])
    if same_as_next.any():
        in_group = np.zeros(n, dtype=np.bool_)
        in_group[1:] |= same_as_next
        in_group[:-1] |= same_as_next
        contested[order] = in_group
    return contested


def resolve_keys(
    sensor: npt.NDArray[np.int32],
    quantity: npt.NDArray[np.int16],
    ts_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    msg: npt.NDArray[np.int32],
    stored: Mapping[int, float] | None = None,
    order: npt.NDArray[np.intp] | None = None,
) -> Resolution:
    """Judge every row. Rows must be in message order; `stored` maps a row to the value already stored for its key;
    `order` is the rows' `key_order` when the caller has it."""
    n = sensor.size
    contested = contested_rows(sensor, quantity, ts_us, order)
    if stored:
        contested[np.fromiter(stored.keys(), dtype=np.int64, count=len(stored))] = True
    if not contested.any():
        return Resolution(np.ones(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_))
    stored = stored or {}
    duplicate = np.zeros(n, dtype=np.bool_)
    conflicts: dict[int, Rejection] = {}
    accepted: dict[tuple[int, int, int], float] = {}  # values contributed by earlier messages of the batch
    rows = np.flatnonzero(contested).tolist()
    msgs = msg[contested].tolist()
    keys = list(zip(sensor[contested].tolist(), quantity[contested].tolist(), ts_us[contested].tolist(), strict=True))
    values = value[contested].tolist()
    i = 0
    while i < len(rows):
        current = msgs[i]
        pending: dict[tuple[int, int, int], float] = {}
        duplicates: list[int] = []
        conflict: Rejection | None = None
        while i < len(rows) and msgs[i] == current:
            row, key, v = rows[i], keys[i], values[i]
            i += 1
            if conflict is not None:
                continue
            if row in stored:
                seen, where = stored[row], "is already stored"
            elif key in pending:
                seen, where = pending[key], "appears earlier in this message"
            else:
                seen, where = accepted.get(key, _MISSING), "appears in an earlier message"
            if seen != seen:  # _MISSING
                pending[key] = v
            elif seen == v:
                duplicates.append(row)
            else:
                conflict = _conflict(key, v, seen, where)
        if conflict is None:
            accepted.update(pending)
            duplicate[duplicates] = True
        else:
            conflicts[current] = conflict
    insert = ~duplicate
    if conflicts:
        insert &= ~np.isin(msg, np.fromiter(conflicts.keys(), dtype=np.int32, count=len(conflicts)))
    return Resolution(insert, duplicate, conflicts)


def _conflict(key: tuple[int, int, int], value: float, seen: float, where: str) -> Rejection:
    _, code, ts_us = key
    name = QUANTITIES_BY_CODE[code].name if code in QUANTITIES_BY_CODE else str(code)
    return Rejection(
        RejectionReason.CONFLICTING_DUPLICATE,
        f"{name} at {format_time(ts_us / 1e6)} {where} with value {seen:g}; this message says {value:g}",
    )
