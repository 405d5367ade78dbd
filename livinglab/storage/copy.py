"""Binary COPY encoding from NumPy columns.

PostgreSQL's binary COPY format is a header, then per row a 16-bit field count and, per field, a 32-bit length and
the value in network byte order, then a trailer. For fixed-width types every row has the same layout, so a whole
batch is one NumPy structured array written in a single `tobytes()`: no Python work per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

PgType = Literal["int2", "int4", "int8", "float8", "timestamptz"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_BIG_ENDIAN = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "timestamptz": ">i8"}
#: Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800_000_000


def encode_binary_copy(columns: Sequence[tuple[PgType, npt.ArrayLike]]) -> bytes:
    """The binary COPY stream for rows given column-wise. `timestamptz` columns are microseconds since the Unix epoch.

    Values must not be NULL (floats may be NaN, which PostgreSQL stores as NaN).
    """
    arrays = [np.asarray(values) for _, values in columns]
    n = arrays[0].size if arrays else 0
    if any(a.size != n for a in arrays):
        raise ValueError("columns differ in length")
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for i, (pg_type, _) in enumerate(columns):
        fields += [(f"len{i}", ">i4"), (f"col{i}", _BIG_ENDIAN[pg_type])]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["nfields"] = len(columns)
    for i, ((pg_type, _), array) in enumerate(zip(columns, arrays, strict=True)):
        rows[f"len{i}"] = np.dtype(_BIG_ENDIAN[pg_type]).itemsize
        rows[f"col{i}"] = array - PG_EPOCH_OFFSET_US if pg_type == "timestamptz" else array
    return _HEADER + rows.tobytes() + _TRAILER
