"""Bulk export of readings and aggregates as CSV or Parquet, with memory bounded whatever the size.

Shared by `GET /v1/export/...` and `livinglab export`: both run `write_export` (the API in a thread of its own,
see `stream_export`, handing the bytes to the response as they come; the command line to a file). It lists the
(sensor, quantity) series that have rows in the range, in the order of the file (`sensor_id`, then quantity name),
then runs one `COPY (SELECT ...) TO STDOUT` per series, which reads that series in time order straight off the
primary key `(sensor_key, quantity, time)`: no sort of the whole range, no OFFSET, and the output order is the
order of the statements, not a planner's choice. All in one REPEATABLE READ transaction: the file is one snapshot.

- CSV (RFC 4180): PostgreSQL writes it (`FORMAT csv`); this module only adds the header and turns line ends into
  CRLF. No field can hold a line break (ids, quantity names, numbers and times), so that is a byte replacement.
  Times are ISO 8601 UTC with `Z` (`livinglab_iso`), booleans `true`/`false`, nulls empty; doubles are written in
  PostgreSQL's shortest exact form, so parsing one back gives the served value bit for bit.
- Values: readings as stored; aggregates as `/v1/sensors/{id}/aggregates` serves them (`mean`, `p50`, `p95` and
  `completeness` rounded in the COPY's SELECT by `livinglab.precision.sql_round_field`, `count`, `min` and `max` as
  stored), so a file and the API give the same numbers.
- Parquet: binary COPY rows, gathered into row groups of `ROW_GROUP_ROWS` and written one group at a time with
  pyarrow; times are timestamps in microseconds, UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Final

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import Connection, IsolationLevel, sql

from livinglab.domain import Window
from livinglab.precision import sql_round_field

#: Rows per Parquet row group (and per batch held in memory while writing one).
ROW_GROUP_ROWS: Final = 65_536


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"

    @property
    def media_type(self) -> str:
        return "text/csv; charset=utf-8" if self is ExportFormat.CSV else "application/vnd.apache.parquet"


#: Columns of an aggregates export after `sensor_id` and `quantity` (CONTRACT.md sections 2 and 7).
AGGREGATE_COLUMNS: Final = (
    "window_start", "count", "mean", "min", "max", "p50", "p95", "completeness", "final",
)  # fmt: skip
READING_COLUMNS: Final = ("ts", "value")
#: The aggregate columns read from the table, between `window_start` and `final`.
_AGGREGATE_FIGURES: Final = AGGREGATE_COLUMNS[1:-1]

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_READINGS_SCHEMA = pa.schema(
    [("sensor_id", pa.string()), ("quantity", pa.string()), ("ts", _TIMESTAMP), ("value", pa.float64())]
)
_AGGREGATES_SCHEMA = pa.schema(
    [
        ("sensor_id", pa.string()),
        ("quantity", pa.string()),
        ("window_start", _TIMESTAMP),
        ("count", pa.int32()),
        *[(name, pa.float64()) for name in ("mean", "min", "max", "p50", "p95", "completeness")],
        ("final", pa.bool_()),
    ]
)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: readings (`window` None) or the aggregates of `window`, with `start <= time < end`.

    `cities` None: every city. `quantity`: a quantity code. `final_before`: aggregates whose window starts at or
    before it are final (their end plus the allowed lateness has passed).
    """

    start: datetime
    end: datetime
    window: Window | None = None
    cities: Sequence[str] | None = None
    district: str | None = None
    sensor_id: str | None = None
    quantity: int | None = None
    final_before: datetime | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return ("sensor_id", "quantity", *(READING_COLUMNS if self.window is None else AGGREGATE_COLUMNS))

    @property
    def schema(self) -> pa.Schema:
        return _READINGS_SCHEMA if self.window is None else _AGGREGATES_SCHEMA

    @property
    def csv_header(self) -> bytes:
        return (",".join(self.columns) + "\r\n").encode()

    @property
    def _table(self) -> sql.Identifier:
        return sql.Identifier("readings" if self.window is None else self.window.table)

    @property
    def _time(self) -> sql.Identifier:
        return sql.Identifier("ts" if self.window is None else "window_start")

    def _params(self) -> dict[str, Any]:
        return {
            "cities": None if self.cities is None else list(self.cities),
            "district": self.district,
            "sensor_id": self.sensor_id,
            "q": self.quantity,
            "start": self.start,
            "end": self.end,
            "final_before": self.final_before,
        }

    def series_query(self) -> tuple[sql.Composed, dict[str, Any]]:
        """(sensor_key, sensor_id, quantity code, quantity name) of every series with rows in the range, in file
        order; one index probe per sensor and quantity."""
        query = sql.SQL(
            "SELECT s.sensor_key, s.sensor_id, q.code, q.name FROM sensors s CROSS JOIN quantities q"
            " WHERE (%(cities)s::text[] IS NULL OR s.city = ANY(%(cities)s))"
            " AND (%(district)s::text IS NULL OR s.district = %(district)s)"
            " AND (%(sensor_id)s::text IS NULL OR s.sensor_id = %(sensor_id)s)"
            " AND (%(q)s::int2 IS NULL OR q.code = %(q)s)"
            " AND EXISTS (SELECT FROM {table} r WHERE r.sensor_key = s.sensor_key AND r.quantity = q.code"
            " AND r.{time} >= %(start)s AND r.{time} < %(end)s)"
            ' ORDER BY s.sensor_id COLLATE "C", q.name COLLATE "C"'
        ).format(table=self._table, time=self._time)
        return query, self._params()

    def _select(self, series: tuple[int, str, int, str], *, text: bool) -> sql.Composed:
        key, sensor_id, code, name = series
        time: sql.Composable = (
            sql.SQL("livinglab_iso(r.{})").format(self._time) if text else sql.SQL("r.{}").format(self._time)
        )
        if self.window is None:
            fields: sql.Composable = sql.SQL("{}, r.value").format(time)
        else:
            final = sql.SQL("r.window_start <= {}").format(sql.Literal(self.final_before))
            if text:
                final = sql.SQL("CASE WHEN {} THEN 'true' ELSE 'false' END").format(final)
            # Figures as `/v1/sensors/{id}/aggregates` serves them (livinglab.precision): statistics and completeness
            # rounded in the COPY's SELECT (the series' quantity a literal, so the decimals fold into the plan),
            # `count`, `min` and `max` as stored.
            figures = sql.SQL(", ").join(
                sql_round_field(name, sql.Identifier("r", name), quantity_code=sql.Literal(int(code)))
                for name in _AGGREGATE_FIGURES
            )
            fields = sql.SQL("{}, {}, {}").format(time, figures, final)
        # COPY takes no bound parameters; every value here is a literal quoted by psycopg, never spliced text.
        return sql.SQL(
            "SELECT {sensor_id}::text, {name}::text, {fields} FROM {table} r"
            " WHERE r.sensor_key = {key} AND r.quantity = {code} AND r.{time} >= {start} AND r.{time} < {end}"
            " ORDER BY r.{time}"
        ).format(
            sensor_id=sql.Literal(sensor_id),
            name=sql.Literal(name),
            fields=fields,
            table=self._table,
            key=sql.Literal(int(key)),
            code=sql.Literal(int(code)),
            time=self._time,
            start=sql.Literal(self.start),
            end=sql.Literal(self.end),
        )

    def csv_copy(self, series: tuple[int, str, int, str]) -> sql.Composed:
        return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(self._select(series, text=True))

    def binary_copy(self, series: tuple[int, str, int, str]) -> sql.Composed:
        return sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(self._select(series, text=False))

    @property
    def _copy_types(self) -> list[str]:
        if self.window is None:
            return ["text", "text", "timestamptz", "float8"]
        return ["text", "text", "timestamptz", "int4", *["float8"] * 6, "bool"]


#: Bytes of CSV gathered before they are written or sent on.
CHUNK_BYTES: Final = 256 * 1024


class _Buffer:
    """CSV rows gathered into chunks, with line ends turned into CRLF."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes | bytearray | memoryview) -> bool:
        """Keep `data`; True when a chunk is full."""
        chunk = bytes(data)
        self._parts.append(chunk)
        self._size += len(chunk)
        return self._size >= CHUNK_BYTES

    def take(self) -> bytes:
        data = b"".join(self._parts).replace(b"\n", b"\r\n")
        self._parts.clear()
        self._size = 0
        return data


class _RowGroups:
    """Rows gathered into Parquet row groups, written one at a time to `sink`."""

    def __init__(self, schema: pa.Schema, sink: Any) -> None:
        self.schema = schema
        self._writer = pq.ParquetWriter(sink, schema, compression="zstd")
        self._rows: list[tuple[Any, ...]] = []

    def add(self, row: tuple[Any, ...]) -> bool:
        """Keep `row`; True when a row group was written."""
        self._rows.append(row)
        if len(self._rows) >= ROW_GROUP_ROWS:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        if not self._rows:
            return
        columns = list(zip(*self._rows, strict=True))
        arrays = [pa.array(col, type=field.type) for col, field in zip(columns, self.schema, strict=True)]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=len(self._rows))
        self._rows.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


# ---- the API: the same writer in a thread, its output handed over to asyncio ----------------------------------


class ExportCancelledError(Exception):
    """The reader of a streamed export went away (the client disconnected)."""


_END = object()


class _Pipe:
    """A write-only file that hands what the export thread writes to the event loop, in chunks of `CHUNK_BYTES`,
    at most `depth` chunks ahead of the reader (bounded memory); `write` raises ExportCancelledError once the reader
    is gone."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.ready = asyncio.Event()
        self.cancelled = False
        self._parts: list[bytes] = []
        self._size = 0
        self._position = 0
        self.closed = False

    # -- the export thread's side
    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._size += len(chunk)
        self._position += len(chunk)
        if self._size >= CHUNK_BYTES:
            self.flush()
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._parts.clear()
            self._size = 0
            self.send(data)

    def close(self) -> None:
        self.closed = True

    def send(self, item: object) -> None:
        while True:
            if self.cancelled:
                raise ExportCancelledError
            try:
                self._queue.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        try:
            self._loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the loop is closed: nobody reads any more
            self.cancelled = True
            raise ExportCancelledError from None

    # -- the event loop's side
    async def receive(self) -> object:
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                self.ready.clear()
                if not self._queue.empty():
                    continue
                await self.ready.wait()


async def stream_export(
    connect: Callable[[], Connection[Any]],
    request: ExportRequest,
    fmt: ExportFormat,
    *,
    statement_timeout_ms: int = 0,
    depth: int = 4,
) -> AsyncIterator[bytes]:
    """The export's bytes in chunks, for an asyncio server: `write_export` runs in a thread of its own on a
    connection of its own (`connect()`, closed at the end), its output handed over at most `depth` chunks ahead.

    Why a thread: libpq hands COPY data over one row at a time, and an asyncio read per row costs several times
    what PostgreSQL spends producing the row; a blocking read in a thread keeps up with the server. When the
    consumer stops early (the client disconnected), the thread's next write raises and its connection closes."""
    loop = asyncio.get_running_loop()
    pipe = _Pipe(loop, depth)

    def produce() -> None:
        try:
            with connect() as conn:
                write_export(conn, request, fmt, pipe, statement_timeout_ms=statement_timeout_ms)  # type: ignore[arg-type]
            pipe.flush()
            pipe.send(_END)
        except ExportCancelledError:
            pass
        except BaseException as exc:  # handed to the reader, which raises it
            with contextlib.suppress(ExportCancelledError):
                pipe.send(exc)

    thread = threading.Thread(target=produce, name="livinglab-export", daemon=True)
    thread.start()
    try:
        while True:
            item = await pipe.receive()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        pipe.cancelled = True


# ---- sync: the command line ---------------------------------------------------------------------------------------


def write_export(
    conn: Connection[Any],
    request: ExportRequest,
    fmt: ExportFormat,
    out: BinaryIO,
    progress: Callable[[int], None] | None = None,
    *,
    statement_timeout_ms: int | None = None,
) -> int:
    """Write the export to `out` from one snapshot; returns the rows written. `progress(rows)` is called with the
    rows written so far after each chunk and row group. `statement_timeout_ms` bounds each series' COPY (0: no
    bound; None: the connection's), which runs as long as `out` takes to take it."""
    rows = 0
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction(), conn.cursor() as cur:
        if statement_timeout_ms is not None:
            for setting in ("statement_timeout", "idle_in_transaction_session_timeout"):
                cur.execute(
                    sql.SQL("SELECT set_config({}, {}, true)").format(
                        sql.Literal(setting), sql.Literal(str(statement_timeout_ms))
                    )
                )
        query, params = request.series_query()
        series = [tuple(row) for row in cur.execute(query, params).fetchall()]
        if fmt is ExportFormat.CSV:
            buffer = _Buffer()
            buffer.add(request.csv_header.replace(b"\r\n", b"\n"))
            for one in series:
                with cur.copy(request.csv_copy(one)) as copy:
                    for data in copy:
                        rows += 1
                        if buffer.add(data):
                            out.write(buffer.take())
                            if progress is not None:
                                progress(rows)
            out.write(buffer.take())
            if progress is not None:
                progress(rows)
            return rows
        groups = _RowGroups(request.schema, out)
        for one in series:
            with cur.copy(request.binary_copy(one)) as copy:
                copy.set_types(request._copy_types)
                for record in copy.rows():
                    rows += 1
                    if groups.add(record) and progress is not None:
                        progress(rows)
        groups.close()
        if progress is not None:
            progress(rows)
    return rows


def count_rows(conn: Connection[Any], request: ExportRequest) -> int:
    """How many rows the export holds (for a progress bar's total): an index-only count per series."""
    query, params = request.series_query()
    total = 0
    for one in conn.execute(query, params).fetchall():
        select = sql.SQL("SELECT count(*) FROM ({}) c").format(request._select(tuple(one), text=False))
        total += int(conn.execute(select).fetchone()[0])  # type: ignore[index]
    return total


__all__ = [
    "AGGREGATE_COLUMNS",
    "READING_COLUMNS",
    "ROW_GROUP_ROWS",
    "ExportFormat",
    "ExportRequest",
    "count_rows",
    "stream_export",
    "write_export",
]


def final_before(window: Window, allowed_lateness_s: int, now: datetime) -> datetime:
    """Aggregates of `window` starting at or before this are final."""
    return now - window.width - timedelta(seconds=allowed_lateness_s)
