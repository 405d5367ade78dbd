"""The precision each served figure carries: one table, used by the API, the dashboard, SensorThings and exports.

Computed figures are served rounded to the decimals their inputs carry (docs/metrics.md, "Precision of served
figures"), so a client reads `flow_pcu_h` 662.6, not 662.5999999999999. Stored values stay unrounded; raw
readings (and an aggregate's `min` and `max`, which are readings) are served as stored.

Rounding is half away from zero on the value's 15-significant-digit decimal writing, which is what PostgreSQL's
`round(x::numeric, d)` does with a float8 `x`: `round_field` in Python and `sql_round_field` in a query give the
same number.

    round_field("flow_pcu_h", 662.5999999999999)            # 662.6
    round_field("mean", 35.44999999, quantity="pm25")        # 35.45
    round_field("value", 12.3456)                           # 12.3456 (a reading: no precision, unchanged)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType

from psycopg import sql

from livinglab.domain import QUANTITIES

#: Decimal places of a quantity's readings as sensors report them (in its canonical unit).
READING_DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        "pm25": 1,
        "pm10": 1,
        "no2": 1,
        "so2": 1,
        "o3": 1,
        "co": 0,
        "hc": 1,
        "temp": 1,
        "rh": 1,
        "sm": 0,
        "kr": 0,
        "kb": 0,
        "speed": 1,
        "occupancy": 1,
    }
)

#: Statistics of readings that are not readings themselves (a mean, an interpolated percentile): one place more
#: than the readings, per quantity.
STATISTICS: frozenset[str] = frozenset({"mean", "p50", "p95", "mean_24h"})

#: Decimal places of the figures whose precision does not depend on a quantity, by field name.
FIELD_DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        # Traffic (PKJI): counts are whole vehicles; ekr factors have two decimals, so a flow in pcu has two.
        "flow_veh_h": 0,
        "flow_pcu_h": 2,
        # C0 (whole pcu/h) times factors of two decimals: reported in whole pcu/h, as PKJI's tables do.
        "capacity_pcu_h": 0,
        # The decimals the level of service is read at (pkji_2023.toml: los.dj_decimals).
        "degree_of_saturation": 2,
        # A mean of speed readings (0.1 km/h): one place more.
        "mean_speed_kmh": READING_DECIMALS["speed"] + 1,
        # Shares of counted readings or hours: to 0.1 % and 0.01 %.
        "completeness": 3,
        "achieved": 4,
    }
)


#: Room for any float8's 15 significant digits plus the decimals asked for.
_CONTEXT = Context(prec=400)


def decimals_of(field: str, *, quantity: str | None = None) -> int | None:
    """The decimal places `field` (of `quantity`, for statistics of readings) is served at; None when the field is
    served as stored (readings, identifiers, integers, fields without a table entry)."""
    if field in STATISTICS:
        if quantity is None:
            raise ValueError(f"{field!r} is a statistic of readings: its precision depends on the quantity")
        return READING_DECIMALS[quantity] + 1
    return FIELD_DECIMALS.get(field)


def round_to(value: float, decimals: int) -> float:
    """`value` rounded half away from zero to `decimals` places of its 15-significant-digit decimal writing
    (PostgreSQL's `round(value::numeric, decimals)::float8`). NaN and infinities are returned as they are."""
    if not math.isfinite(value):
        return value
    exact = Decimal(f"{value:.15g}")
    return float(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP, context=_CONTEXT))


def round_field(field: str, value: float | None, *, quantity: str | None = None) -> float | None:
    """`value` of `field` as it is served: rounded to `decimals_of(field, quantity=...)` places, or unchanged when
    the field has no precision of its own. None stays None."""
    if value is None:
        return None
    decimals = decimals_of(field, quantity=quantity)
    return value if decimals is None else round_to(float(value), decimals)


def sql_round(expression: sql.Composable, decimals: int | sql.Composable) -> sql.Composable:
    """`expression` (float8) rounded in a query exactly as `round_to` does; NULL stays NULL."""
    places = sql.Literal(decimals) if isinstance(decimals, int) else decimals
    return sql.SQL("round(({})::numeric, {})::float8").format(expression, places)


def sql_round_field(
    field: str, expression: sql.Composable, *, quantity_code: sql.Composable | None = None
) -> sql.Composable:
    """`expression` of `field` rounded in a query as `round_field` rounds it. For a statistic of readings, pass the
    quantity's code column as `quantity_code` (its decimals are looked up per row)."""
    if field in STATISTICS:
        if quantity_code is None:
            raise ValueError(f"{field!r} is a statistic of readings: pass quantity_code")
        cases = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(QUANTITIES[name].code), sql.Literal(places + 1))
            for name, places in READING_DECIMALS.items()
        )
        return sql_round(expression, sql.SQL("CASE {} {} END").format(quantity_code, cases))
    decimals = FIELD_DECIMALS.get(field)
    return expression if decimals is None else sql_round(expression, decimals)


def _check_table() -> None:
    missing = set(QUANTITIES) - set(READING_DECIMALS)
    if missing:  # a new quantity must say how its readings are read
        raise RuntimeError(f"livinglab.precision: no reading decimals for {', '.join(sorted(missing))}")


_check_table()
