"""Mutation fuzzing of the payload decoder, bounded: valid payloads with bits flipped, bytes cut, spliced and
members repeated. Complements the random-input properties of tests/ingest/test_decode.py, which rarely get past
the JSON parser: mutants of valid payloads reach the shape, vocabulary, range and time checks."""

from __future__ import annotations

import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import Rejection, decode_payload
from livinglab.domain import QUANTITIES, Kind, RejectionReason

NOW = time.time()
SEEDS = [
    json.dumps([{"bn": "urn:dev:livinglab:aq-7:", "bt": int(NOW) - 60}, {"n": "pm25", "u": "ug/m3", "v": 41.3},
                {"n": "no2", "u": "ppb", "v": 20, "t": 30}]).encode(),
    json.dumps({"ts": "2026-11-28T10:00:00+07:00", "pm25": 41.3, "pm10": 63.0}).encode(),
    json.dumps([{"ts": int(NOW) - 120, "temp": 30.5, "rh": 80}, {"ts": int(NOW) - 60, "o3": 12}]).encode(),
]  # fmt: skip


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "replace"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b"NaN", b"1e999", b'"', b"\\u0000", b"\xff", b",", b":", b"{", b"]"]))
        elif op == "repeat":
            j = draw(st.integers(i, len(data)))
            data[j:j] = data[i:j]
        else:
            data[i : i + 1] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_mutated_payloads_never_crash_and_never_store_nonsense(payload: bytes) -> None:
    result = decode_payload(payload, kind=Kind.AIR, received_at_s=NOW)
    if isinstance(result, Rejection):
        assert result.reason in RejectionReason
        assert "\x00" not in result.detail
        return
    codes = {q.code: q for q in QUANTITIES.values()}
    for code, value in zip(result.quantity.tolist(), result.value.tolist(), strict=True):
        quantity = codes[code]
        assert quantity.kind is Kind.AIR
        assert math.isfinite(value)
        assert quantity.min_value <= value <= quantity.max_value
