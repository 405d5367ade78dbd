"""An independent US AQI sub-index, in exact decimal and rational arithmetic, to check the processor and the
simulator's ground truth against (CONTRACT.md section 4).

Truncation is EPA's with only binary floating-point error forgiven: the exact binary value of a concentration is
rounded to 9 significant digits (half even, as decimal formatting rounds), then cut to the table's decimals. The
index is (IHi - ILo) / (BPHi - BPLo) (C - BPLo) + ILo in fractions, rounded half up; above the table it is the cap.
Only the breakpoint table itself comes from the platform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction

from livinglab.reference import aqi_table

SIGNIFICANT_DIGITS = 9
_NINE_DIGITS = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)


def epa_truncate(value: float, decimals: int) -> Decimal:
    """The concentration the AQI table reads: `value` rounded to 9 significant digits, then truncated."""
    return _NINE_DIGITS.plus(Decimal(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)


def epa_sub_index(column: str, concentration: Decimal) -> int | None:
    """The AQI of a truncated concentration on one breakpoint column; None below the first defined band."""
    table = aqi_table()
    c = Fraction(concentration)
    seen_band = False
    for category, band in zip(table.categories, table.breakpoints[column], strict=True):
        if band is None:
            continue
        low, high = (Fraction(Decimal(repr(edge))) for edge in band)
        if c <= high:
            if c < low:
                return category.index_lo if seen_band else None
            exact = Fraction(category.index_hi - category.index_lo) / (high - low) * (c - low) + category.index_lo
            return math.floor(exact + Fraction(1, 2))
        seen_band = True
    return table.max_index


def breakpoint_edges(column: str, decimals: int) -> Iterator[float]:
    """Concentrations (in the column's unit) at and around every breakpoint, where truncation decides the band:
    each edge, one table step below and above, a rounding error off each, and values a little below the edge that
    only exact truncation cuts down."""
    step = Decimal(1).scaleb(-decimals)
    for band in aqi_table().breakpoints[column]:
        if band is None:
            continue
        for edge in band:
            for point in (Decimal(repr(edge)) - step, Decimal(repr(edge)), Decimal(repr(edge)) + step):
                x = float(point)
                yield x
                yield math.nextafter(x, -math.inf)
                yield math.nextafter(x, math.inf)
                for relative in (1e-12, 1e-10, 4e-10, 6e-10, 1e-9, 1e-8, 1e-7):
                    yield x * (1 - relative)
                    yield x * (1 + relative)
