"""Moving columns between PostgreSQL and NumPy without Python work per row.

Reading: a query aggregates each column into one array (`array_agg`), so the server sends one row holding a few
large arrays; binary loaders registered on the cursor turn each array's wire format (a header, then a 4-byte
length and the value per element) into a NumPy array with one `frombuffer`. Writing: a binary COPY of NumPy
columns (`livinglab.storage.copy`) into a temporary staging table, from which SQL upserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

from livinglab.storage.copy import PG_EPOCH_OFFSET_US, PgType, encode_binary_copy

_SQL_TYPES: dict[PgType, str] = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float8": "double precision",
    "timestamptz": "timestamptz",
}


class _ArrayLoader(Loader):
    """Loads a one-dimensional PostgreSQL array without NULL elements as a NumPy array."""

    format = Format.BINARY
    element = ">f8"
    native: type[np.generic] = np.float64

    def load(self, data: Buffer) -> npt.NDArray[Any]:
        header = np.frombuffer(data, dtype=">i4", count=3)
        ndim, has_null = int(header[0]), int(header[1])
        if ndim == 0:
            return np.empty(0, dtype=self.native)
        if ndim != 1 or has_null:
            raise ValueError("expected a one-dimensional array without NULL elements")
        rows = np.frombuffer(data, dtype=np.dtype([("len", ">i4"), ("v", self.element)]), offset=20)
        return self._convert(rows["v"])

    def _convert(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return values.astype(self.native)


class _Int2ArrayLoader(_ArrayLoader):
    element = ">i2"
    native = np.int16


class _Int4ArrayLoader(_ArrayLoader):
    element = ">i4"
    native = np.int32


class _Int8ArrayLoader(_ArrayLoader):
    element = ">i8"
    native = np.int64


class _TimestamptzArrayLoader(_ArrayLoader):
    """timestamptz[] as int64 microseconds since the Unix epoch."""

    element = ">i8"
    native = np.int64

    def _convert(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return values.astype(np.int64) + PG_EPOCH_OFFSET_US


#: Array type OIDs (int2[], int4[], int8[], float8[], timestamptz[]) and their loaders.
_LOADERS: dict[int, type[_ArrayLoader]] = {
    1005: _Int2ArrayLoader,
    1007: _Int4ArrayLoader,
    1016: _Int8ArrayLoader,
    1022: _ArrayLoader,
    1185: _TimestamptzArrayLoader,
}


def fetch_arrays(
    conn: psycopg.Connection[Any], query: str | sql.Composed, params: Any = None
) -> tuple[npt.NDArray[Any], ...]:
    """Run a query that returns one row of arrays (use `coalesce(array_agg(x), '{}')`); return them as NumPy arrays.

    Supported element types: smallint, integer, bigint, double precision and timestamptz (as int64 microseconds
    since the Unix epoch). Elements must not be NULL.
    """
    with conn.cursor(binary=True) as cur:
        for oid, loader in _LOADERS.items():
            cur.adapters.register_loader(oid, loader)
        cur.execute(query, params, binary=True)
        row = cur.fetchone()
    if row is None:
        raise ValueError("the query returned no row")
    return tuple(row)


def stage(conn: psycopg.Connection[Any], table: str, columns: Sequence[tuple[str, PgType, npt.ArrayLike]]) -> int:
    """Create (once per session) the temporary table `table` and binary-COPY the columns into it.

    The table is emptied at every commit. Returns the number of rows staged. `timestamptz` columns are int64
    microseconds since the Unix epoch.
    """
    ident = sql.Identifier(table)
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
            ident,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_SQL_TYPES[pg_type]))
                for name, pg_type, _ in columns
            ),
        )
    )
    payload = [(pg_type, values) for _, pg_type, values in columns]
    rows = int(np.asarray(columns[0][2]).size) if columns else 0
    with conn.cursor().copy(
        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            ident, sql.SQL(", ").join(sql.Identifier(name) for name, _, _ in columns)
        )
    ) as copy:
        copy.write(encode_binary_copy(payload))
    return rows
