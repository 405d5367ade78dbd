"""Query parameters shared by the routes: time ranges, points in time and pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request

from api.pagination import decode_cursor
from api.problems import ProblemError
from api.settings import ApiSettings

#: Hard ceiling of `limit` (the setting `max_page_size` may lower it).
MAX_LIMIT = 1000

#: Times the API takes, `[EARLIEST, LATEST)` in UTC: far wider than any sensor's life, and far enough from the ends
#: of Python's and PostgreSQL's calendars that no range arithmetic (a day back, a year ahead) can overflow.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def utc_instant(name: str, value: datetime) -> datetime:
    """`value` in UTC, or a 400 problem when it has no offset or lies outside `[EARLIEST, LATEST)`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ProblemError(400, f"{name} needs a UTC offset (for example 2026-11-28T10:00:00Z)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 lies before the first day of the calendar
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ProblemError(
            400, f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)", parameter=name
        )
    return utc


def _aware(name: str, value: datetime | None) -> datetime | None:
    return utc_instant(name, value) if value is not None else None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A half-open span `[start, end)` in UTC."""

    start: datetime
    end: datetime

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def check_span(self, max_span: timedelta) -> None:
        if self.span > max_span:
            raise ProblemError(400, f"the time range spans {self.span}, more than the {max_span} this endpoint allows")


async def time_range(
    request: Request,
    start: Annotated[
        datetime | None,
        Query(
            description="Start of the range, inclusive (ISO 8601 with an offset, 1900 to 2200). Default: 24 hours "
            "before end."
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(description="End of the range, exclusive (ISO 8601 with an offset, 1900 to 2200). Default: now."),
    ] = None,
) -> TimeRange:
    start, end = _aware("start", start), _aware("end", end)
    if end is None:
        end = datetime.now(UTC)
    if start is None:
        start = end - timedelta(hours=24)
    if start > end:
        raise ProblemError(400, "start must not be after end")
    result = TimeRange(start, end)
    settings: ApiSettings = request.app.state.settings
    result.check_span(timedelta(days=settings.max_range_days))
    return result


async def point_in_time(
    at: Annotated[
        datetime | None,
        Query(
            description="Answer as of this time (ISO 8601 with an offset, 1900 to 2200): per sensor, the latest value "
            "labelled at or before it. Default: now."
        ),
    ] = None,
) -> datetime:
    return _aware("at", at) or datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None

    def after(self, arity: int) -> list[object] | None:
        """The decoded cursor (the last item's sort key), or None for the first page."""
        return decode_cursor(self.cursor, arity)

    def after_text(self) -> str | None:
        """The text key a page ordered by one text column starts after; None for the first page."""
        after = self.after(1)
        return str(after[0]) if after else None

    def after_int(self) -> int | None:
        """The integer key a page ordered by one integer column starts after; None for the first page, 400 when the
        cursor holds no integer."""
        after = self.after(1)
        try:
            return int(str(after[0])) if after else None
        except ValueError:
            raise ProblemError(400, "the cursor is not valid") from None


async def page_request(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 100,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")] = None,
) -> PageRequest:
    settings: ApiSettings = request.app.state.settings
    if limit > settings.max_page_size:
        raise ProblemError(400, f"limit is at most {settings.max_page_size}")
    return PageRequest(limit, cursor)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]
AtDep = Annotated[datetime, Depends(point_in_time)]
PageDep = Annotated[PageRequest, Depends(page_request)]
