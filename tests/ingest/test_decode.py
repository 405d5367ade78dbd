"""The payload decoder on its own: every reason code, the hostile inputs, the edge classifications of
docs/devices.md, and (hypothesis) that it never raises."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import Limits, Rejection, Rows, decode_payload
from ingest._json import find_duplicate_key
from livinglab.domain import QUANTITIES, Kind, RejectionReason

R = RejectionReason
NOW = 1_795_852_800.0  # 2026-11-28T08:00:00Z
T = NOW - 600  # a comfortable "recent" time


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def decode(payload: bytes, kind: Kind = Kind.AIR, limits: Limits | None = None) -> Rows | Rejection:
    return decode_payload(payload, kind=kind, received_at_s=NOW, limits=limits)


def reason(payload: bytes, kind: Kind = Kind.AIR, limits: Limits | None = None) -> RejectionReason | None:
    outcome = decode(payload, kind, limits)
    return outcome.reason if isinstance(outcome, Rejection) else None


SENML_EXAMPLE = [
    {"bn": "urn:dev:livinglab:aq-07:", "bt": T},
    {"n": "pm25", "u": "ug/m3", "v": 41.3},
    {"n": "pm10", "u": "ug/m3", "v": 63.0},
    {"n": "pm25", "t": 60, "v": 40.9},
]
GOOD = [
    pytest.param(dumps({"ts": T, "pm25": 41.3}), [(1, T, 41.3)], id="simple-unix-seconds"),
    pytest.param(dumps({"ts": "2026-11-28T14:50:00+07:00", "pm25": 41.3}), [(1, T, 41.3)], id="simple-iso-offset"),
    pytest.param(dumps({"ts": "2026-11-28T07:50:00Z", "pm10": 63}), [(2, T, 63.0)], id="simple-iso-z"),
    pytest.param(
        dumps([{"ts": T, "pm25": 1}, {"ts": T + 60, "pm25": 2}]), [(1, T, 1.0), (1, T + 60, 2.0)], id="simple-array"
    ),
    pytest.param(dumps({"ts": T, "pm25": "41.5"}), [(1, T, 41.5)], id="numeric-string-value"),
    pytest.param(dumps(SENML_EXAMPLE), [(1, T, 41.3), (2, T, 63.0), (1, T + 60, 40.9)], id="senml-contract-example"),
    pytest.param(
        dumps([{"bn": "aq-07:", "bt": T, "bu": "mg/m3", "n": "pm25", "v": 0.0413}]),
        [(1, T, 41.3)],
        id="senml-base-unit",
    ),
    pytest.param(dumps([{"n": "pm25", "t": -30, "v": 5}]), [(1, NOW - 30, 5.0)], id="senml-relative-time"),
    pytest.param(dumps([{"bver": 10, "bt": T, "n": "pm25", "v": 5}]), [(1, T, 5.0)], id="senml-bver-10"),
    pytest.param(dumps([{"bver": 5, "bt": T}, {"n": "pm25", "v": 5}]), [(1, T, 5.0)], id="senml-bver-5"),
    pytest.param(dumps([{"bver": 10.0, "bt": T, "n": "pm25", "v": 5}]), [(1, T, 5.0)], id="senml-bver-10.0"),
    pytest.param(dumps([{"n": "pm25", "t": T, "s": "7.5"}]), [(1, T, 7.5)], id="senml-string-value"),
    pytest.param(dumps([{"n": "temp", "t": T, "u": "K", "v": 300.15}]), [(8, T, 27.0)], id="kelvin"),
    pytest.param(dumps([{"n": "no2", "t": T, "u": "ppb", "v": 24.45}]), [(3, T, 46.0055)], id="ppb-no2"),
    pytest.param(dumps([{"n": "co", "t": T, "u": "ppm", "v": 1}]), [(6, T, 28.0101 / 24.45 * 1000)], id="ppm-co"),
    pytest.param(dumps({"ts": T, "rh": 50}), [(9, T, 50.0)], id="rh"),
    pytest.param(b'{"ts": %d, "pm25": 1e2}' % T, [(1, T, 100.0)], id="exponent"),
    pytest.param(b' \n{"ts": %d, "pm25": 1}\n ' % T, [(1, T, 1.0)], id="surrounding-whitespace"),
    pytest.param(
        dumps({"ts": T, "pm25": 1, "pm10": 2, "co": 3}), [(1, T, 1.0), (2, T, 2.0), (6, T, 3.0)], id="three-quantities"
    ),
]


@pytest.mark.parametrize(("payload", "expected"), GOOD)
def test_good_payloads_decode_to_canonical_readings(payload: bytes, expected: list[tuple[int, float, float]]) -> None:
    rows = decode(payload)
    assert isinstance(rows, Rows), rows
    got = sorted(zip(rows.quantity.tolist(), (rows.ts_us / 1e6).tolist(), rows.value.tolist(), strict=True))
    assert len(got) == len(expected)
    for (q, ts, v), (eq, ets, ev) in zip(got, sorted(expected), strict=True):
        assert q == eq
        assert ts == pytest.approx(ets, abs=1e-6)
        assert v == pytest.approx(ev, rel=1e-12)


def test_traffic_counts_decode_for_traffic_sensors() -> None:
    rows = decode(dumps({"ts": T, "sm": 120, "kr": 40, "kb": 3, "speed": 31.5, "occupancy": 12}), Kind.TRAFFIC)
    assert isinstance(rows, Rows)
    assert sorted(rows.quantity.tolist()) == [101, 102, 103, 104, 105]


BIG_INT = b"9" * 5000
NESTED = b"[" * 10_000 + b"]" * 10_000

BAD = [
    # 2. message level, in contract order
    pytest.param(b"x" * (256 * 1024 + 1), R.PAYLOAD_TOO_LARGE, id="over-the-limit"),
    pytest.param(b'{"ts": 1, "pm25": "\xff"}', R.INVALID_UTF8, id="invalid-utf8"),
    pytest.param(b'{"ts": 1, "pm25": "\xed\xa0\x80"}', R.INVALID_UTF8, id="utf8-encoded-surrogate"),
    pytest.param(b'{"ts": %d, "pm25": NaN}' % T, R.NON_FINITE_VALUE, id="bare-nan"),
    pytest.param(b'{"ts": %d, "pm25": Infinity}' % T, R.NON_FINITE_VALUE, id="bare-infinity"),
    pytest.param(b'{"ts": %d, "pm25": -Infinity}' % T, R.NON_FINITE_VALUE, id="bare-minus-infinity"),
    pytest.param(dumps({"ts": T, "pm25": "NaN"}), R.NON_FINITE_VALUE, id="nan-string"),
    pytest.param(dumps({"ts": T, "pm25": "-inf"}), R.NON_FINITE_VALUE, id="inf-string"),
    pytest.param(dumps([{"n": "pm25", "t": T, "s": "Infinity"}]), R.NON_FINITE_VALUE, id="senml-infinity-string"),
    pytest.param(dumps({"ts": "NaN", "pm25": 1}), R.NON_FINITE_VALUE, id="nan-string-ts"),
    pytest.param(b'{"ts": %d, "pm25": NaN, "pm25": 1}' % T, R.NON_FINITE_VALUE, id="nan-before-duplicate"),
    pytest.param(b'{"ts": 1, "pm25": 41.3', R.INVALID_JSON, id="truncated"),
    pytest.param(b"{'ts': 1, 'pm25': 1}", R.INVALID_JSON, id="single-quotes"),
    pytest.param(b'{"ts": 1, "pm25": 1,}', R.INVALID_JSON, id="trailing-comma"),
    pytest.param(b"", R.INVALID_JSON, id="empty"),
    pytest.param(b'{"ts": 1, "pm25": 1} {"ts": 2}', R.INVALID_JSON, id="two-documents"),
    pytest.param(b'\xef\xbb\xbf{"ts": 1, "pm25": 1}', R.INVALID_JSON, id="byte-order-mark"),
    pytest.param(NESTED, R.INVALID_JSON, id="nested-10000-deep"),
    pytest.param(b'{"ts": 1, "pm25": "a\x00b"}', R.INVALID_JSON, id="raw-nul-in-string"),
    pytest.param(b'{"ts": %d, "pm\\ud80025": 1}' % T, R.INVALID_JSON, id="lone-surrogate-in-name"),
    pytest.param(b'{"ts": %d, "pm25": "\\udc00"}' % T, R.INVALID_JSON, id="lone-surrogate-in-value"),
    pytest.param(b'{"ts": %d, "pm25": NaN' % T, R.INVALID_JSON, id="nan-in-broken-json"),
    pytest.param(b'{"ts": %d, "pm25": 1, "pm25": 2}' % T, R.DUPLICATE_KEY, id="duplicate-quantity"),
    pytest.param(b'{"ts": %d, "ts": %d, "pm25": 1}' % (T, T), R.DUPLICATE_KEY, id="duplicate-ts"),
    pytest.param(b'{"ts": "2026-11-27T23:50:00Z", "pm25": 1, "pm25": 1}', R.DUPLICATE_KEY, id="duplicate-with-colons"),
    pytest.param(b'[{"n": "pm25", "n": "pm10", "t": %d, "v": 1}]' % T, R.DUPLICATE_KEY, id="senml-duplicate"),
    pytest.param(b'{"ts": %d, "pm25": 1, "pm\\u0032\\u0035": 2}' % T, R.DUPLICATE_KEY, id="duplicate-via-escape"),
    pytest.param(b'{"ts": %d, "pm25": {"a": 1, "a": 2}}' % T, R.DUPLICATE_KEY, id="duplicate-before-shape"),
    pytest.param(dumps({"ts": "2026-11-28T10:00:00", "pm25": 1}), R.INVALID_SHAPE, id="ts-without-time-zone"),
    pytest.param(dumps({"pm25": 1}), R.INVALID_SHAPE, id="missing-ts"),
    pytest.param(dumps({"ts": "yesterday", "pm25": 1}), R.INVALID_SHAPE, id="unparsable-ts"),
    pytest.param(dumps({"ts": True, "pm25": 1}), R.INVALID_SHAPE, id="boolean-ts"),
    pytest.param(dumps({"ts": T, "pm25": True}), R.INVALID_SHAPE, id="boolean-value"),
    pytest.param(dumps({"ts": T, "pm25": None}), R.INVALID_SHAPE, id="null-value"),
    pytest.param(dumps({"ts": T, "pm25": "41,3"}), R.INVALID_SHAPE, id="non-number-string"),
    pytest.param(dumps({"ts": T, "pm25": [1]}), R.INVALID_SHAPE, id="array-value"),
    pytest.param(dumps({"ts": T}), R.INVALID_SHAPE, id="no-quantities"),
    pytest.param(dumps([]), R.INVALID_SHAPE, id="empty-array"),
    pytest.param(dumps(41.3), R.INVALID_SHAPE, id="bare-number"),
    pytest.param(dumps("pm25"), R.INVALID_SHAPE, id="bare-string"),
    pytest.param(dumps([1, 2]), R.INVALID_SHAPE, id="array-of-numbers"),
    pytest.param(dumps([{"n": "pm25", "t": T, "vs": "x"}]), R.INVALID_SHAPE, id="senml-unsupported-field"),
    pytest.param(dumps([{"n": "pm25", "t": T}]), R.INVALID_SHAPE, id="senml-record-without-value"),
    pytest.param(dumps([{"n": "pm25", "t": T, "v": 1, "s": "1"}]), R.INVALID_SHAPE, id="senml-v-and-s"),
    pytest.param(dumps([{"bn": 7, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-non-string-bn"),
    pytest.param(dumps([{"bt": T}]), R.INVALID_SHAPE, id="senml-base-only"),
    # RFC 8428 section 4.4: bver is a positive integer, and a pack of a version newer than 10 must not be used.
    pytest.param(dumps([{"bver": 11, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-11"),
    pytest.param(dumps([{"bt": T, "bver": 11}, {"n": "pm25", "v": 1}]), R.INVALID_SHAPE, id="senml-bver-11-head"),
    pytest.param(dumps([{"bver": 10.5, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-fraction"),
    pytest.param(dumps([{"bver": 0, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-0"),
    pytest.param(dumps([{"bver": -3, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-negative"),
    pytest.param(dumps([{"bver": "11", "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-11-string"),
    pytest.param(dumps([{"bver": True, "n": "pm25", "t": T, "v": 1}]), R.INVALID_SHAPE, id="senml-bver-boolean"),
    pytest.param(b'[{"bver": 1e400, "n": "pm25", "t": %d, "v": 1}]' % T, R.INVALID_SHAPE, id="senml-bver-huge"),
    pytest.param(
        dumps([{"n": "pm25", "t": T, "v": 1}, {"bver": 12}]), R.INVALID_SHAPE, id="senml-bver-11-in-a-later-record"
    ),
    pytest.param(dumps([{"ts": T, "pm25": 1}, {"n": "pm25", "v": 1}]), R.INVALID_SHAPE, id="mixed-forms"),
    pytest.param(b"[" * 100 + b"]" * 100, R.INVALID_SHAPE, id="nested-100-deep"),
    pytest.param(dumps({"ts": T, "pm25": "NaN"})[:-1] + b', "pm10": [1]}', R.NON_FINITE_VALUE, id="nan-before-shape"),
    # 3. per record, in contract order over all records
    pytest.param(dumps({"ts": T, "pm1": 1}), R.UNKNOWN_QUANTITY, id="unknown-quantity"),
    pytest.param(dumps({"ts": T, "pm2\u0000": 1}), R.UNKNOWN_QUANTITY, id="escaped-nul-in-name"),
    pytest.param(dumps({"ts": T, "PM25": 1}), R.UNKNOWN_QUANTITY, id="case-matters"),
    pytest.param(dumps([{"n": "urn:dev:x:", "t": T, "v": 1}]), R.UNKNOWN_QUANTITY, id="senml-empty-quantity"),
    pytest.param(dumps({"ts": T, "sm": 1}), R.KIND_MISMATCH, id="traffic-quantity-on-air-sensor"),
    pytest.param(dumps([{"n": "pm25", "u": "ppb", "t": T, "v": 1}]), R.BAD_UNIT, id="ppb-for-pm"),
    pytest.param(dumps([{"n": "temp", "u": "F", "t": T, "v": 70}]), R.BAD_UNIT, id="fahrenheit"),
    pytest.param(dumps([{"n": "pm25", "u": "x\u0000", "t": T, "v": 1}]), R.BAD_UNIT, id="escaped-nul-in-unit"),
    pytest.param(dumps({"ts": T, "pm25": -1}), R.OUT_OF_RANGE, id="negative-concentration"),
    pytest.param(dumps({"ts": T, "rh": 100.5}), R.OUT_OF_RANGE, id="humidity-over-100"),
    pytest.param(b'{"ts": %d, "pm25": %s}' % (T, BIG_INT), R.OUT_OF_RANGE, id="integer-with-5000-digits"),
    pytest.param(b'{"ts": %d, "pm25": -%s}' % (T, BIG_INT), R.OUT_OF_RANGE, id="negative-5000-digits"),
    pytest.param(b'{"ts": %d, "pm25": 1e400}' % T, R.OUT_OF_RANGE, id="number-beyond-double"),
    pytest.param(dumps([{"n": "pm25", "u": "kg/m3", "t": T, "v": 1e300}]), R.OUT_OF_RANGE, id="overflow-after-unit"),
    pytest.param(dumps({"ts": NOW + 3600, "pm25": 1}), R.TIMESTAMP_IN_FUTURE, id="future"),
    pytest.param(dumps({"ts": T * 1000, "pm25": 1}), R.TIMESTAMP_IN_FUTURE, id="milliseconds"),
    pytest.param(dumps([{"bt": T * 1000, "n": "pm25", "v": 1}]), R.TIMESTAMP_IN_FUTURE, id="senml-milliseconds"),
    pytest.param(b'{"ts": %s, "pm25": 1}' % BIG_INT, R.TIMESTAMP_IN_FUTURE, id="ts-with-5000-digits"),
    pytest.param(dumps({"ts": NOW - 8 * 86400, "pm25": 1}), R.TIMESTAMP_TOO_OLD, id="too-old"),
    pytest.param(dumps({"ts": 0, "pm25": 1}), R.TIMESTAMP_TOO_OLD, id="epoch-zero"),
    pytest.param(dumps({"ts": "1970-01-01T00:00:00+00:00", "pm25": 1}), R.TIMESTAMP_TOO_OLD, id="iso-epoch"),
]


@pytest.mark.parametrize(("payload", "expected"), BAD)
def test_bad_payloads_are_rejected_with_their_reason(payload: bytes, expected: RejectionReason) -> None:
    outcome = decode(payload)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.reason is expected, outcome.detail
    assert "\x00" not in outcome.detail
    outcome.detail.encode("utf-8")  # no lone surrogates either: the detail goes into a text column


def test_the_first_failed_check_in_contract_order_names_the_message() -> None:
    # Record 0 is out of range, record 1 an unknown quantity: unknown_quantity comes first in the contract.
    assert reason(dumps([{"ts": T, "pm25": -5}, {"ts": T, "pm1": 1}])) is R.UNKNOWN_QUANTITY
    assert reason(dumps([{"n": "pm25", "t": T, "v": 1e9}, {"n": "sm", "t": T, "v": 1}])) is R.KIND_MISMATCH
    assert reason(dumps([{"ts": NOW + 3600, "pm25": 1}, {"ts": T, "pm25": -1}])) is R.OUT_OF_RANGE
    assert reason(dumps([{"ts": NOW - 9e6, "pm25": 1}, {"ts": NOW + 9e6, "pm25": 1}])) is R.TIMESTAMP_IN_FUTURE
    # A shape problem anywhere outranks vocabulary problems.
    assert reason(dumps([{"ts": T, "pm1": 1}, {"ts": T, "pm25": None}])) is R.INVALID_SHAPE


def test_the_millisecond_hint_is_in_the_detail() -> None:
    outcome = decode(dumps({"ts": T * 1000, "pm25": 1}))
    assert isinstance(outcome, Rejection)
    assert "milliseconds" in outcome.detail


def test_limits_are_configurable() -> None:
    assert reason(dumps({"ts": T, "pm25": 1, "pm10": 1}), limits=Limits(max_payload_bytes=40)) is R.PAYLOAD_TOO_LARGE
    assert reason(dumps([{"n": "pm25", "t": -1, "v": 1}] * 3), limits=Limits(max_records=2)) is R.INVALID_SHAPE
    assert reason(dumps({"ts": T, "pm25": 11}), limits=Limits(ranges={"pm25": (0, 10)})) is R.OUT_OF_RANGE
    assert reason(dumps({"ts": T, "pm25": 10}), limits=Limits(ranges={"pm25": (0, 10)})) is None
    assert reason(dumps({"ts": NOW + 1, "pm25": 1}), limits=Limits(max_clock_skew_s=0)) is R.TIMESTAMP_IN_FUTURE
    assert reason(dumps({"ts": NOW - 61, "pm25": 1}), limits=Limits(max_lateness_s=60)) is R.TIMESTAMP_TOO_OLD
    with pytest.raises(ValueError, match="unknown quantities"):
        Limits(ranges={"pm2.5": (0, 1)})


def test_defaults_accept_seven_days_old_and_two_minutes_ahead() -> None:
    assert reason(dumps({"ts": NOW - 7 * 86400 + 1, "pm25": 1})) is None
    assert reason(dumps({"ts": NOW + 119, "pm25": 1})) is None


# -- properties ---------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_the_decoder_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    outcome = decode(payload)
    assert isinstance(outcome, Rows | Rejection)
    if isinstance(outcome, Rejection):
        assert "\x00" not in outcome.detail
        outcome.detail.encode("utf-8")


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
names = st.sampled_from(["ts", "pm25", "pm10", "sm", "n", "v", "t", "bn", "bt", "u", "s", "x:y", "a\\b", '"'])
members = st.lists(st.tuples(names, json_scalars | st.just(T)), max_size=6)


@PROPERTY_SETTINGS
@given(json_values)
def test_the_decoder_never_raises_on_arbitrary_json(value: Any) -> None:
    assert isinstance(decode(json.dumps(value).encode()), Rows | Rejection)


def _object_text(pairs: list[tuple[str, Any]]) -> bytes:
    return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}").encode()


@PROPERTY_SETTINGS
@given(members, st.booleans())
def test_duplicate_member_names_are_always_found(pairs: list[tuple[str, Any]], as_array: bool) -> None:
    text = _object_text(pairs)
    payload = b"[" + text + b"]" if as_array else text
    repeated = len({k for k, _ in pairs}) < len(pairs)
    assert (find_duplicate_key(payload) is not None) == repeated
    if repeated:
        assert reason(payload) in (R.DUPLICATE_KEY, R.NON_FINITE_VALUE)
    else:
        assert reason(payload) is not R.DUPLICATE_KEY


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([q.name for q in QUANTITIES.values() if q.kind is Kind.AIR]),
            st.floats(min_value=0, max_value=50, allow_nan=False),
            st.integers(min_value=-86400, max_value=0),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_valid_senml_packs_decode_exactly(records: list[tuple[str, float, int]]) -> None:
    pack = [{"bn": "urn:dev:livinglab:aq-07:", "bt": NOW}] + [{"n": n, "v": v, "t": t} for n, v, t in records]
    rows = decode(dumps(pack))
    assert isinstance(rows, Rows), rows
    assert rows.quantity.tolist() == [QUANTITIES[n].code for n, _, _ in records]
    assert rows.value.tolist() == [v for _, v, _ in records]
    assert np.array_equal(rows.ts_us, np.array([int((NOW + t) * 1e6) for _, _, t in records]))
    assert all(math.isfinite(v) for v in rows.value.tolist())


BVERS = st.sampled_from([10, 1, 11, 0, -1, 10.0, 9.5, "10", "11"])
senml_records = st.lists(
    st.fixed_dictionaries(
        {
            "n": st.sampled_from(["pm25", "pm10", "no2", "co", "temp", "rh", "sm", "x"]),
            "v": st.integers(-5, 5) | st.floats(-5, 300),
        },
        optional={
            "u": st.sampled_from(["ug/m3", "mg/m3", "ppb", "K", "Cel", "%", "bad"]),
            "t": st.integers(-100, 100) | st.floats(-100, 100),
            "bn": st.sampled_from(["", "urn:dev:livinglab:aq-07:", "aq:", "x"]),
            "bt": st.sampled_from([0, T, T * 1000, NOW + 500]),
            "bu": st.sampled_from(["ug/m3", "ppm", None]),
            "bver": BVERS,
        },
    ),
    min_size=1,
    max_size=8,
)
uniform_packs = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            "bn": st.sampled_from(["urn:dev:livinglab:aq-07:", "aq:", "", "x"]),
            "bt": st.sampled_from([0, T, NOW - 10, None, True]),
            "bu": st.sampled_from(["ug/m3", "mg/m3", "x"]),
            "bver": BVERS,
            "v": st.floats(0, 50),
        },
    ),
    st.lists(
        st.fixed_dictionaries(
            {"v": st.integers(-5, 5) | st.floats(-5, 300) | st.just("1")},
            optional={
                "n": st.sampled_from(["pm25", "no2", "temp", "sm", "x:y"]),
                "u": st.sampled_from(["ug/m3", "ppb", "K", "bad"]),
                "t": st.integers(-100, 100) | st.floats(-100, 100),
            },
        ),
        min_size=1,
        max_size=12,
    ),
).map(lambda pack: [pack[0], *pack[1]])
plain_objects = st.dictionaries(
    st.sampled_from(["pm25", "pm10", "rh", "sm", "ts"]), st.integers(-5, 5) | st.floats(-5, 300), min_size=1
).map(lambda d: {"ts": T, **d})


@PROPERTY_SETTINGS
@given(
    st.lists(st.tuples(senml_records | uniform_packs | plain_objects, st.sampled_from(Kind)), min_size=1, max_size=4)
)
def test_the_plain_paths_decide_exactly_like_the_full_walk(documents: list[tuple[Any, Kind]]) -> None:
    """Several messages through one decoder (as a batch goes), so what a plain path remembers across messages of a
    batch is compared too."""
    from ingest._plain import PLAIN_PATHS
    from ingest.decode import PayloadDecoder
    from ingest.rows import RowBuffer

    outcomes = []
    for paths in (PLAIN_PATHS, frozenset()):
        rows = RowBuffer()
        decoder = PayloadDecoder(rows, Limits(), paths=paths)
        rejections = [
            decoder.decode(dumps(document), kind=kind, received_at_s=NOW, msg=i)
            for i, (document, kind) in enumerate(documents)
        ]
        outcomes.append((rejections, rows))
    (fast_rejections, fast_rows), (walk_rejections, walk_rows) = outcomes
    assert fast_rejections == walk_rejections
    assert fast_rows == walk_rows


def test_names_resolved_in_one_pack_do_not_leak_into_the_next() -> None:
    from ingest.decode import PayloadDecoder
    from ingest.rows import RowBuffer

    rows = RowBuffer()
    decoder = PayloadDecoder(rows, Limits())
    packs = [
        [{"bn": "aq:", "bu": "mg/m3", "bt": T}, {"n": "pm25", "v": 0.04}],
        [{"bn": "aq:", "bt": T + 1}, {"n": "pm25", "v": 40}],
        [{"bn": "aq", "bt": T + 2}, {"n": "pm25", "v": 40}],
    ]
    outcomes = [decoder.decode(dumps(p), kind=Kind.AIR, received_at_s=NOW, msg=i) for i, p in enumerate(packs)]
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None
    assert outcomes[2].reason is R.UNKNOWN_QUANTITY  # "aqpm25"
    assert [v * scale for v, scale in zip(rows.value, rows.scale, strict=True)] == pytest.approx([40.0, 40.0])
