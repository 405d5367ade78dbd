"""RFC 9457 problem details for every error the API returns, including validation and database errors."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers or None)


#: Pydantic error types of date and time values.
_DATE_ERRORS = ("datetime_", "date_", "time_", "timezone_")


def _data_error_detail(exc: psycopg.DataError) -> str:
    """The platform's own words for a value the database refused."""
    if isinstance(exc, psycopg.errors.DatetimeFieldOverflow | psycopg.errors.InvalidDatetimeFormat):
        return "a time is outside the range the platform stores"
    if isinstance(exc, psycopg.errors.NumericValueOutOfRange):
        return "a number is outside the range the platform stores"
    if isinstance(exc, psycopg.errors.StringDataRightTruncation):
        return "a text value is longer than the platform stores"
    if isinstance(exc, psycopg.errors.CharacterNotInRepertoire | psycopg.errors.UntranslatableCharacter) or (
        "NUL" in str(exc)
    ):
        return "a text value holds a character the platform cannot store (such as NUL)"
    return "a value is one the platform cannot store"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, title=exc.title, instance=request.url.path, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), instance=request.url.path, headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        # A time that does not parse is a bad date like one out of range (api.params.utc_instant): 400, not 422.
        dates = bool(errors) and all(str(e.get("type", "")).startswith(_DATE_ERRORS) for e in exc.errors())
        detail = "a time is not an ISO 8601 date-time with an offset" if dates else "the request has invalid parameters"
        return problem_response(400 if dates else 422, detail, instance=request.url.path, errors=errors)

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # Values the database refuses, such as a NUL character in a text parameter: the client's input is at fault.
        # The driver's own message names internals (types, encodings, the server's wording): it goes to the log.
        log.info("database refused a value on %s: %s", request.url.path, exc)
        return problem_response(400, _data_error_detail(exc), instance=request.url.path)

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def _timeout(request: Request, exc: psycopg.errors.QueryCanceled) -> JSONResponse:
        log.warning("query cancelled on %s: %s", request.url.path, exc)
        return problem_response(
            503, "the query took longer than the API allows", instance=request.url.path, headers={"Retry-After": "5"}
        )

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection for %s: %s", request.url.path, exc)
        return problem_response(
            503, "the database is busy or unavailable", instance=request.url.path, headers={"Retry-After": "5"}
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _database(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database error on %s: %s", request.url.path, exc)
        return problem_response(
            503, "the database is unavailable", instance=request.url.path, headers={"Retry-After": "5"}
        )
