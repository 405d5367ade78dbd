"""Bulk export of readings and aggregates as CSV or Parquet files, streamed with bounded memory
(`livinglab.export` does the work; `livinglab export` writes the same files from the command line)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from psycopg import Connection
from starlette.responses import StreamingResponse

from api.access import Access, ReadAccessDep
from api.deps import SettingsDep
from api.params import utc_instant
from api.problems import ProblemError
from api.routes.common import CityQuery, DistrictQuery, QuantityQuery, quantity_of
from api.schemas import COMMON_RESPONSES
from api.settings import ApiSettings
from livinglab.domain import IDENTIFIER_PATTERN, Window
from livinglab.export import ExportFormat, ExportRequest, final_before, stream_export

router = APIRouter(prefix="/v1/export", tags=["export"], responses=COMMON_RESPONSES)


def _file_responses(columns: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": f"The file: columns {columns}. CSV (RFC 4180, UTF-8, header row, CRLF, times ISO 8601 UTC "
            "with `Z`, booleans `true`/`false`, nulls empty) or Parquet (times in microseconds, UTC).",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


class ExportFilter:
    """The query parameters both exports share."""

    def __init__(
        self,
        city: CityQuery = None,
        district: DistrictQuery = None,
        sensor_id: Annotated[
            str | None, Query(pattern=rf"^{IDENTIFIER_PATTERN}$", description="Only this sensor.")
        ] = None,
        quantity: QuantityQuery = None,
        start: Annotated[
            datetime | None,
            Query(description="Start of the range, inclusive (ISO 8601 with an offset). Default: 24 hours before end."),
        ] = None,
        end: Annotated[
            datetime | None, Query(description="End of the range, exclusive (ISO 8601 with an offset). Default: now.")
        ] = None,
        format: Annotated[ExportFormat, Query(description="`csv` (default) or `parquet`.")] = ExportFormat.CSV,
    ) -> None:
        self.city = city
        self.district = district
        self.sensor_id = sensor_id
        self.quantity = quantity
        self.start = start
        self.end = end
        self.format = format

    def request(self, access: Access, settings: ApiSettings, window: Window | None) -> ExportRequest:
        end = utc_instant("end", self.end) if self.end is not None else datetime.now(UTC)
        start = utc_instant("start", self.start) if self.start is not None else end - timedelta(hours=24)
        if start > end:
            raise ProblemError(400, "start must not be after end")
        if end - start > timedelta(days=settings.max_export_days):
            raise ProblemError(
                400,
                f"the time range spans {end - start}, more than the {settings.max_export_days} days an export "
                "allows (LIVINGLAB_MAX_EXPORT_DAYS)",
            )
        wanted = quantity_of(self.quantity)
        return ExportRequest(
            start=start,
            end=end,
            window=window,
            cities=access.cities_param(self.city),
            district=self.district,
            sensor_id=self.sensor_id,
            quantity=wanted.code if wanted else None,
            final_before=None
            if window is None
            else final_before(window, settings.allowed_lateness_s, datetime.now(UTC)),
        )


ExportFilterDep = Annotated[ExportFilter, Depends()]


def _stream(request: Request, export: ExportRequest, fmt: ExportFormat, name: str) -> StreamingResponse:
    settings: ApiSettings = request.app.state.settings
    slots: asyncio.Semaphore = request.app.state.export_slots
    if slots.locked():
        raise ProblemError(
            503,
            f"{settings.max_concurrent_exports} exports are running (LIVINGLAB_MAX_CONCURRENT_EXPORTS); retry later",
            headers={"Retry-After": "10"},
        )
    timeout_ms = settings.export_timeout_ms
    database_url = settings.require_database_url()
    policy = settings.database_policy()

    def connect() -> Connection[Any]:
        # A connection of the export's own, outside the pool: it is held as long as the client reads. It carries
        # the policy's libpq settings (keepalives, TCP user timeout: a dead link fails it) but not the watchdog of
        # the roles' connections, which costs a lock and a clock read per wait, that is per COPY row here.
        return Connection.connect(database_url, application_name="livinglab-api-export", **policy.connection_kwargs())

    async def body() -> AsyncIterator[bytes]:
        async with slots:
            async for chunk in stream_export(connect, export, fmt, statement_timeout_ms=timeout_ms):
                yield chunk

    extension = "csv" if fmt is ExportFormat.CSV else "parquet"
    return StreamingResponse(
        body(),
        media_type=fmt.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{extension}"'},
    )


@router.get(
    "/readings",
    summary="Export raw readings",
    response_class=StreamingResponse,
    responses=_file_responses("`sensor_id`, `quantity`, `ts`, `value`"),
)
async def export_readings(
    access: ReadAccessDep, settings: SettingsDep, request: Request, params: ExportFilterDep
) -> StreamingResponse:
    """Readings with `start <= ts < end` of the sensors matching the filters, ordered by `sensor_id`, `quantity`
    and `ts`, as one file streamed from the database (any size, memory bounded). The range may span at most
    `LIVINGLAB_MAX_EXPORT_DAYS` days (default 366)."""
    export = params.request(access, settings, None)
    return _stream(request, export, params.format, "readings")


@router.get(
    "/aggregates",
    summary="Export windowed aggregates",
    response_class=StreamingResponse,
    responses=_file_responses(
        "`sensor_id`, `quantity`, `window_start`, `count`, `mean`, `min`, `max`, `p50`, `p95`, `completeness`, `final`"
    ),
)
async def export_aggregates(
    access: ReadAccessDep,
    settings: SettingsDep,
    request: Request,
    window: Annotated[Window, Query(description="Window width: 1m, 1h or 1d.")],
    params: ExportFilterDep,
) -> StreamingResponse:
    """Aggregates of `window` with `start <= window_start < end`, ordered by `sensor_id`, `quantity` and
    `window_start`, as one streamed file. Figures and `final` as `/v1/sensors/{sensor_id}/aggregates` serves them:
    `mean`, `p50`, `p95` and `completeness` at their precision, `count`, `min` and `max` as stored."""
    export = params.request(access, settings, window)
    return _stream(request, export, params.format, f"aggregates_{window.value}")
