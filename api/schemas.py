"""Types shared by the response models: UTC times, pages of items and the problem document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    # The database hands back timestamps in the session time zone; the contract speaks UTC with `Z`, which is how
    # pydantic writes an aware datetime whose offset is zero.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A point in time, served as ISO 8601 UTC with `Z`.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list. Pass `next_cursor` back as `cursor` for the next page; null on the last page."""

    items: list[ItemT]
    next_cursor: str | None = Field(description="Opaque cursor of the next page; null on the last page.")


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Bad Request"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["start must be before end"])
    instance: str | None = Field(default=None, examples=["/v1/air/ispu"])


def problem_doc(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {"application/problem+json": {}}}


#: Responses every authenticated route may give, for the OpenAPI document.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("A parameter is out of bounds (time range, cursor, unknown quantity)."),
    401: problem_doc("No API key, or one that is not valid."),
    403: problem_doc("The API key's scope does not allow this."),
    422: problem_doc("A parameter or the body does not validate."),
    429: problem_doc("Too many requests from this key or client; see Retry-After."),
    503: problem_doc("The database is unavailable or the query took too long; retry later."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_doc("No such resource.")}
