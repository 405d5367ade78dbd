"""Moving columns between PostgreSQL and NumPy without Python work per row.

Reading: a query aggregates each column into one array (`array_agg`), so the server sends one row holding a few
large arrays; binary loaders registered on the cursor turn each array's wire format (a header, then a 4-byte
length and the value per element) into a NumPy array with one `frombuffer`. Parameters: NumPy arrays are sent as
binary PostgreSQL arrays the same way (`adapt_numpy`). Writing: a binary COPY of NumPy columns
(`livinglab.storage.copy`) into a temporary staging table, from which SQL upserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper, Loader, PyFormat
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


#: NumPy element type -> (element OID, array OID, big-endian dtype) of the PostgreSQL array it is sent as.
_DUMPED: dict[type[np.generic], tuple[int, int, str]] = {
    np.int16: (21, 1005, ">i2"),
    np.int32: (23, 1007, ">i4"),
    np.int64: (20, 1016, ">i8"),
    np.float64: (701, 1022, ">f8"),
    np.datetime64: (1184, 1185, ">i8"),  # datetime64[us] as timestamptz
}


class _NdarrayDumper(Dumper):
    """Sends a one-dimensional NumPy array as a binary PostgreSQL array of the matching type."""

    format = Format.BINARY

    def get_key(self, obj: Any, format: PyFormat) -> Any:
        return (np.ndarray, obj.dtype.type)

    def upgrade(self, obj: Any, format: PyFormat) -> Dumper:
        kind = obj.dtype.type
        if kind not in _DUMPED or (kind is np.datetime64 and obj.dtype != np.dtype("datetime64[us]")):
            raise TypeError(f"cannot send a NumPy array of {obj.dtype} (use int16/32/64, float64, datetime64[us])")
        dumper = _TypedNdarrayDumper(self.cls)
        dumper.element_oid, dumper.oid, dumper.element = _DUMPED[kind]
        return dumper

    def dump(self, obj: Any) -> Buffer | None:
        return self.upgrade(obj, PyFormat.BINARY).dump(obj)


class _TypedNdarrayDumper(Dumper):
    format = Format.BINARY
    element_oid = 0
    element = ">f8"

    def dump(self, obj: Any) -> Buffer | None:
        values = np.ascontiguousarray(obj).ravel()
        if values.dtype.type is np.datetime64:
            values = values.astype(np.int64) - PG_EPOCH_OFFSET_US
        if values.size == 0:
            return np.array([0, 0, self.element_oid], dtype=">i4").tobytes()
        header = np.array([1, 0, self.element_oid, values.size, 1], dtype=">i4").tobytes()
        rows = np.empty(values.size, dtype=np.dtype([("len", ">i4"), ("v", self.element)]))
        rows["len"] = np.dtype(self.element).itemsize
        rows["v"] = values
        return header + rows.tobytes()


def adapt_numpy(conn: psycopg.Connection[Any]) -> None:
    """Let `conn` send one-dimensional NumPy arrays (int16/32/64, float64, datetime64[us]) as query parameters."""
    conn.adapters.register_dumper(np.ndarray, _NdarrayDumper)


def us_to_datetime64(us: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """Microseconds since the Unix epoch as datetime64[us], which `adapt_numpy` sends as timestamptz."""
    return np.asarray(us, dtype=np.int64).astype("datetime64[us]")


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
