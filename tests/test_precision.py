"""livinglab.precision: Python's `round_field` and the query's `sql_round_field` give the same numbers, each within
half a unit of the last place served of the unrounded value."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from livinglab.domain import QUANTITIES
from livinglab.precision import (
    FIELD_DECIMALS,
    READING_DECIMALS,
    STATISTICS,
    decimals_of,
    round_field,
    round_to,
    sql_round,
    sql_round_field,
)

FIGURES = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


def test_the_issue_figures() -> None:
    assert round_field("flow_pcu_h", 662.5999999999999) == 662.6
    assert round_field("degree_of_saturation", 0.22754120879120876) == 0.23
    assert round_field("capacity_pcu_h", 2979.36) == 2979.0
    assert round_field("mean", 35.449999999999996, quantity="pm25") == 35.45


def test_half_rounds_away_from_zero_on_the_decimal_writing() -> None:
    # 2.675 is 2.67499999999999982236431605997495353221893310546875 in binary, and still 2.675 to a reader.
    assert round_to(2.675, 2) == 2.68
    assert round_to(-2.675, 2) == -2.68
    assert round_to(0.125, 2) == 0.13
    assert round_to(1.0049999999, 2) == 1.0


def test_readings_and_unknown_fields_keep_their_value() -> None:
    for field in ("value", "min", "max", "ispu", "count"):
        assert round_field(field, 12.345678) == 12.345678
    assert round_field("flow_pcu_h", None) is None
    assert math.isnan(round_to(math.nan, 2))
    assert round_to(math.inf, 2) == math.inf


def test_statistics_need_their_quantity() -> None:
    with pytest.raises(ValueError, match="quantity"):
        decimals_of("mean")
    with pytest.raises(ValueError, match="quantity_code"):
        sql_round_field("p95", sql.Identifier("p95"))
    assert {decimals_of(f, quantity=q) for f in STATISTICS for q in ("pm25", "temp")} == {2}
    assert set(READING_DECIMALS) == set(QUANTITIES)


@given(value=FIGURES, decimals=st.integers(0, 4))
@example(value=100000000.94849956, decimals=3)
def test_within_half_a_unit_of_the_last_place(value: float, decimals: int) -> None:
    rounded = round_to(value, decimals)
    unit = 10.0**-decimals
    # Rounding starts from the 15-significant-digit writing, itself up to half a unit of its 15th digit away
    # (100000000.94849956 is written 100000000.948500 and rounds to .949).
    writing = 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - 14) if value else 0.0
    # Half a unit, plus that, plus the binary error of writing both numbers in float8.
    assert abs(rounded - value) <= unit / 2 + writing + 4 * math.ulp(max(abs(value), unit))
    assert round_to(rounded, decimals) == rounded


@pytest.mark.integration
@settings(max_examples=50, deadline=None)
@given(values=st.lists(FIGURES | st.floats(0, 2, allow_nan=False) | st.none(), min_size=1, max_size=60))
def test_python_and_postgresql_round_alike(pg_server_url: str, values: list[float | None]) -> None:
    fields = [*FIELD_DECIMALS]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        value = sql.SQL("v")
        selected: list[sql.Composable] = [sql_round_field(field, value) for field in fields]
        selected += [
            sql_round_field(stat, value, quantity_code=sql.Literal(q.code))
            for stat in STATISTICS
            for q in QUANTITIES.values()
        ]
        selected.append(sql_round(value, 0))
        query = sql.SQL("SELECT {} FROM unnest(%s::float8[]) WITH ORDINALITY AS t(v, i) ORDER BY i").format(
            sql.SQL(", ").join(selected)
        )
        rows: list[tuple[Any, ...]] = conn.execute(query, (values,)).fetchall()
    for v, row in zip(values, rows, strict=True):
        expected = [round_field(field, v) for field in fields]
        expected += [round_field(stat, v, quantity=q.name) for stat in STATISTICS for q in QUANTITIES.values()]
        expected.append(None if v is None else round_to(v, 0))
        assert list(row) == expected, v
