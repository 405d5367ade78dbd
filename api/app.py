"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

import livinglab
from api.problems import install_problem_handlers
from api.routes import aggregates, health, sensors
from api.settings import ApiSettings
from livinglab.storage import check_schema, connect, create_async_pool

_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>livinglab</title></head>
<body><h1>livinglab</h1><p>The operators' dashboard. API documentation: <a href="/docs">/docs</a>.</p></body></html>
"""


def create_app(settings: ApiSettings) -> FastAPI:
    database_url = settings.require_database_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with connect(database_url, application_name="livinglab-api") as conn:
            check_schema(conn)
        pool = create_async_pool(
            database_url,
            name="api",
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        await pool.open()
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="livinglab",
        version=livinglab.__version__,
        description="Service-level metrics of a city living lab: air quality (ISPU, US AQI), road traffic "
        "(PKJI degree of saturation, level of service) and data quality, from live sensor readings.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(sensors.router)
    app.include_router(aggregates.router)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_INDEX)

    return app
