"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import Response

import livinglab
from api.access import KeyCache, check_routes
from api.deps import IdleCheck
from api.jsonpage import ResponseCache
from api.metrics import ApiMetrics, MetricsMiddleware
from api.middleware import RateLimit, RequestLimits, StrictJsonBody
from api.problems import install_problem_handlers
from api.routes import (
    aggregates,
    air,
    alarms,
    channels,
    cities,
    export,
    health,
    keys,
    quality,
    readings,
    rejected,
    sensors,
    service_levels,
    stream,
    traffic,
)
from api.routes.dashboard import install_dashboard
from api.routes.docs import install_docs
from api.settings import ApiSettings
from api.sta import router as sta_router
from api.stream import EventFeed
from livinglab.storage import check_schema, connect, create_async_pool

_DESCRIPTION = """\
Service-level metrics of a city living lab: air quality (ISPU, US AQI), road traffic (PKJI degree of saturation,
level of service) and data quality, from live sensor readings.

* **Authentication**: `Authorization: Bearer <api key>` (create one with `livinglab keys create --scope read`).
  Scopes: `read` < `sensors:write` < `admin`. Reads may be opened to the public by configuration; writes never.
* **Cities**: a key may be limited to cities (`--city`); it then sees and changes only those. Another city's
  objects answer 404, a filter naming another city an empty list.
* **Times** are ISO 8601 in UTC with `Z`. Ranges are `[start, end)` and default to the last 24 hours.
* **Lists** answer `{"items": [...], "next_cursor": ...}`; pass `next_cursor` as `cursor` for the next page.
* **Indices** (`at=T`): per sensor, the latest value labelled at or before T. ISPU and AQI are labelled by the end
  of the last hour they include, traffic by the start of its hour.
* **Errors** are RFC 9457 problem details (`application/problem+json`).
"""

_TAGS = [
    {"name": "air quality", "description": "ISPU and US AQI per station, from the hourly index tables."},
    {"name": "traffic", "description": "PKJI flow, capacity, degree of saturation and level of service."},
    {"name": "service levels", "description": "Shares of hours meeting targets, per district and service."},
    {"name": "data quality", "description": "Freshness, completeness, latency and ingest counts per sensor."},
    {"name": "sensors", "description": "The sensor registry."},
    {"name": "aggregates", "description": "Windowed statistics of one sensor (1m, 1h, 1d)."},
    {"name": "readings", "description": "Raw readings of one sensor, a page at a time."},
    {"name": "rejected messages", "description": "Messages the ingester rejected, and their replay."},
    {"name": "live updates", "description": "Server-Sent Events of new aggregates and index changes."},
    {"name": "export", "description": "Readings and aggregates as CSV or Parquet files, streamed (open data)."},
    {"name": "alarms", "description": "Alarm rules over the city's metrics, and the alarms they raise."},
    {"name": "cities", "description": "The cities a key sees, and their service-level targets."},
    {"name": "keys", "description": "API keys, limited to a scope and optionally to cities."},
    {
        "name": "notifications",
        "description": "Where alarm notifications go (webhook, MQTT, email) and their deliveries.",
    },
    {"name": "health", "description": "Liveness, dependencies, version and metrics."},
]


def create_app(settings: ApiSettings) -> FastAPI:
    """The API application; it opens its own database pool (separate from any other role's) on startup."""
    database_url = settings.require_database_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_routes(app)  # again: routes may have been added after create_app
        with connect(database_url, application_name="livinglab-api") as conn:
            check_schema(conn)
        pool = create_async_pool(
            database_url,
            name="api",
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            policy=settings.database_policy(),
            check=app.state.idle_check,
        )
        await pool.open()
        feed = EventFeed(database_url, settings.database_policy())
        feed.start()
        # Start serving with live updates flowing when the database allows; a slow LISTEN only delays them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await feed.listening.wait()
        app.state.pool = pool
        app.state.event_feed = feed
        app.state.metrics.watch_gc()
        try:
            yield
        finally:
            app.state.metrics.unwatch_gc()
            await feed.stop()
            await pool.close()

    app = FastAPI(
        title="livinglab",
        version=livinglab.__version__,
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        lifespan=lifespan,
        # Swagger UI is served from the platform itself (api.routes.docs); ReDoc would load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    metrics = ApiMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.key_cache = KeyCache(settings.key_cache_s)
    app.state.idle_check = IdleCheck()
    app.state.response_cache = ResponseCache(settings.response_cache_s)
    app.state.export_slots = asyncio.Semaphore(settings.max_concurrent_exports)
    install_problem_handlers(app)
    for module in (air, traffic, service_levels, quality, sensors, readings, aggregates, rejected, stream, health):
        app.include_router(module.router)
    for module in (cities, keys, export, alarms, channels):
        app.include_router(module.router)
    app.include_router(sta_router)
    # Added last = runs first: metrics see every answer, including 413 and 429.
    app.add_middleware(StrictJsonBody)
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_headers=settings.max_header_count,
        body_timeout_s=settings.request_body_timeout_s,
    )
    app.add_middleware(
        RateLimit,
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        trusted_proxies=settings.trusted_networks,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics.render()

    install_dashboard(app, districts_path=settings.dashboard_districts)
    install_docs(app)
    check_routes(app)
    return app
