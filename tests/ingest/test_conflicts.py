"""Judging a batch's keys: duplicates, conflicts within a message, across messages, and against stored values."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.conflicts import contested_rows, resolve_keys
from livinglab.domain import RejectionReason


def _resolve(rows: list[tuple[int, int, int, float, int]], stored: dict[int, float] | None = None):  # type: ignore[no-untyped-def]
    s, q, t, v, m = (np.array(c) for c in zip(*rows, strict=True))
    return resolve_keys(
        s.astype(np.int32), q.astype(np.int16), t.astype(np.int64), v.astype(np.float64), m.astype(np.int32), stored
    )


def test_distinct_keys_are_all_inserted() -> None:
    result = _resolve([(1, 1, 0, 1.0, 0), (1, 1, 1, 1.0, 0), (2, 1, 0, 1.0, 1), (1, 2, 0, 1.0, 1)])
    assert result.insert.tolist() == [True] * 4
    assert not result.duplicate.any()
    assert result.conflicts == {}


def test_exact_resends_are_duplicates_and_stored_once() -> None:
    result = _resolve([(1, 1, 0, 5.0, 0), (1, 1, 0, 5.0, 1), (1, 1, 0, 5.0, 1), (1, 1, 1, 6.0, 2)])
    assert result.insert.tolist() == [True, False, False, True]
    assert result.duplicate.tolist() == [False, True, True, False]
    assert result.conflicts == {}


def test_a_conflict_rejects_the_whole_later_message_and_the_first_value_stays() -> None:
    # message 1 repeats message 0's key with another value: all of message 1 goes, including its new key.
    result = _resolve([(1, 1, 0, 5.0, 0), (1, 1, 9, 1.0, 1), (1, 1, 0, 6.0, 1)])
    assert result.insert.tolist() == [True, False, False]
    assert list(result.conflicts) == [1]
    assert result.conflicts[1].reason is RejectionReason.CONFLICTING_DUPLICATE
    assert "earlier message" in result.conflicts[1].detail


def test_a_conflict_inside_one_message_rejects_it() -> None:
    result = _resolve([(1, 1, 0, 5.0, 0), (1, 1, 0, 6.0, 0), (1, 1, 1, 1.0, 0)])
    assert not result.insert.any()
    assert "this message" in result.conflicts[0].detail


def test_a_rejected_message_does_not_count_for_later_ones() -> None:
    # message 0 conflicts with the stored value 5.0; message 1 then agrees with what is stored: a duplicate.
    rows = [(1, 1, 0, 7.0, 0), (1, 1, 0, 5.0, 1), (1, 1, 3, 1.0, 1)]
    result = _resolve(rows, stored={0: 5.0, 1: 5.0})
    assert list(result.conflicts) == [0]
    assert result.insert.tolist() == [False, False, True]
    assert result.duplicate.tolist() == [False, True, False]
    assert "already stored" in result.conflicts[0].detail


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_contested_rows_matches_a_naive_count(n: int) -> None:
    rng = np.random.default_rng(n)
    s = rng.integers(0, 3, n).astype(np.int32)
    q = rng.integers(0, 2, n).astype(np.int16)
    t = rng.integers(0, 50, n).astype(np.int64)
    keys = list(zip(s.tolist(), q.tolist(), t.tolist(), strict=True))
    expected = [keys.count(k) > 1 for k in keys]
    assert contested_rows(s, q, t).tolist() == expected
