"""Alarm rules and alarms (CONTRACT.md section 5): write rules, list alarms, acknowledge them.

Rules are validated on write (`livinglab.alarms.rules`; an unknown metric or quantity, or a metric that does not
apply to the scope's sensor, is a 422). A rule belongs to the city of its scope (a sensor's rule to the sensor's
city): a key limited to cities sees and writes only rules of its cities, and may not write a rule of every city.
Evaluation is not done here: the evaluators beside the processors pick a written rule up within a second.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body, Path, Query, Response, status
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from api.access import Access, ReadAccessDep, WriteAccessDep, city_filter, visible_row
from api.deps import ConnDep
from api.pagination import encode_cursor
from api.params import PageDep, utc_instant
from api.problems import ProblemError
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime, problem_doc
from livinglab.alarms.episodes import ALARM_COLUMNS, ALARM_FROM, AlarmState, acknowledge_alarm, alarm_object
from livinglab.alarms.rules import RuleBase, RuleError, RuleSpec, Severity
from livinglab.alarms.store import (
    INSERT_RULE,
    SELECT_SENSOR,
    UPDATE_RULE,
    new_rule_id,
    rule_public,
    rule_values,
    sensor_scope,
)
from livinglab.domain import IDENTIFIER_PATTERN
from livinglab.sensors import Identifier

router = APIRouter(prefix="/v1", responses=COMMON_RESPONSES)

RuleIdPath = Annotated[str, Path(description="The rule's id.", pattern=rf"^{IDENTIFIER_PATTERN}$")]
AlarmIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The alarm's id.")]


class RuleCreate(RuleSpec):
    """A rule to create (`rule_id` is made by the server when absent)."""


class RuleUpdate(RuleBase):
    """The new fields of a rule (a full replacement; defaults apply to omitted fields)."""

    model_config = ConfigDict(extra="forbid")

    rule_id: Identifier | None = Field(default=None, description="Optional; must match the path when given.")
    created_at: UtcDatetime | None = Field(default=None, description="Ignored (accepted so a GET body can be sent).")
    updated_at: UtcDatetime | None = Field(default=None, description="Ignored (accepted so a GET body can be sent).")


class RulePublic(RuleBase):
    """A stored rule."""

    model_config = ConfigDict(extra="ignore")

    rule_id: str
    clear_threshold: float
    created_at: UtcDatetime
    updated_at: UtcDatetime


class RulesPublic(Page[RulePublic]):
    """A page of rules, ordered by id."""


class AlarmPublic(BaseModel):
    """One (rule, sensor) alarm episode."""

    alarm_id: int
    rule_id: str
    rule_name: str
    metric: str
    sensor_id: str
    city: str
    district: str
    severity: Severity
    state: AlarmState
    raised_at: UtcDatetime
    value: float = Field(description="The value that raised the alarm.")
    last_value: float = Field(description="The newest value evaluated while the alarm was open.")
    acknowledged_at: UtcDatetime | None
    note: str | None
    cleared_at: UtcDatetime | None


class AlarmsPublic(Page[AlarmPublic]):
    """A page of alarms, newest `raised_at` first."""


class Acknowledgement(BaseModel):
    """An acknowledgement of an active alarm."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=2000)] | None = None


def _unprocessable(exc: RuleError) -> ProblemError:
    return ProblemError(
        422, exc.message, errors=[{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]
    )


async def _values(conn: psycopg.AsyncConnection[Any], access: Access, rule_id: str, spec: RuleBase) -> dict[str, Any]:
    """The rule's column values, checked against the registry and the caller's cities."""
    sensor = None
    if spec.sensor_id is not None:
        cur = await conn.execute(SELECT_SENSOR, (spec.sensor_id,))
        sensor = sensor_scope(await cur.fetchone())
        if sensor is not None and not access.sees(sensor.city):
            sensor = None  # another city's sensor does not exist for this caller
    try:
        values = rule_values(rule_id, spec, sensor)
    except RuleError as exc:
        raise _unprocessable(exc) from None
    if values["city"] is None:
        if access.limited:
            raise ProblemError(403, "this API key is limited to cities; a rule it writes must name one of them")
    else:
        access.check_writable(values["city"])
    return values


async def _rule_row(conn: psycopg.AsyncConnection[Any], access: Access, rule_id: str) -> dict[str, Any]:
    return await visible_row(
        conn, access, "SELECT * FROM alarm_rules WHERE rule_id = %s", (rule_id,), f"no alarm rule {rule_id!r}"
    )


@router.get("/alarm-rules", summary="List alarm rules", tags=["alarms"])
async def list_rules(
    access: ReadAccessDep,
    conn: ConnDep,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=64, description="Only rules of this city.")] = None,
) -> RulesPublic:
    """Alarm rules, ordered by `rule_id`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT * FROM alarm_rules WHERE {city_filter('city')}"
            " AND (%(after)s::text IS NULL OR rule_id > %(after)s) ORDER BY rule_id LIMIT %(limit)s",
            {"cities": access.cities_param(city), "after": page.after_text(), "limit": page.limit + 1},
        )
        rows = await cur.fetchall()
    items = [RulePublic.model_validate(rule_public(r)) for r in rows[: page.limit]]
    next_cursor = encode_cursor([items[-1].rule_id]) if len(rows) > page.limit else None
    return RulesPublic(items=items, next_cursor=next_cursor)


@router.post(
    "/alarm-rules",
    status_code=status.HTTP_201_CREATED,
    summary="Create an alarm rule",
    tags=["alarms"],
    responses={409: problem_doc("A rule with this id exists.")},
)
async def create_rule(access: WriteAccessDep, conn: ConnDep, rule: RuleCreate, response: Response) -> RulePublic:
    """Create a rule; it is evaluated against every sensor of its scope within a second. Needs `sensors:write`."""
    rule_id = rule.rule_id or new_rule_id()
    values = await _values(conn, access, rule_id, rule)
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(INSERT_RULE, values)
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, f"alarm rule {rule_id!r} already exists") from None
    assert row is not None
    response.headers["Location"] = f"/v1/alarm-rules/{rule_id}"
    return RulePublic.model_validate(rule_public(row))


@router.get(
    "/alarm-rules/{rule_id}",
    summary="One alarm rule",
    tags=["alarms"],
    responses=NOT_FOUND,
)
async def get_rule(access: ReadAccessDep, conn: ConnDep, rule_id: RuleIdPath) -> RulePublic:
    return RulePublic.model_validate(rule_public(await _rule_row(conn, access, rule_id)))


@router.put(
    "/alarm-rules/{rule_id}",
    summary="Replace an alarm rule",
    tags=["alarms"],
    responses=NOT_FOUND,
)
async def replace_rule(
    access: WriteAccessDep, conn: ConnDep, rule_id: RuleIdPath, update: Annotated[RuleUpdate, Body()]
) -> RulePublic:
    """Replace every field of a rule. Open alarms stay open and are evaluated under the new fields (disabling a
    rule clears its open alarms). Needs `sensors:write`."""
    if update.rule_id is not None and update.rule_id != rule_id:
        raise ProblemError(422, f"the body's rule_id {update.rule_id!r} differs from the path's {rule_id!r}")
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM alarm_rules WHERE rule_id = %s FOR UPDATE", (rule_id,))
        await _rule_row(conn, access, rule_id)
        values = await _values(conn, access, rule_id, update)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(UPDATE_RULE, values)
            row = await cur.fetchone()
    assert row is not None
    return RulePublic.model_validate(rule_public(row))


@router.delete(
    "/alarm-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an alarm rule and its alarms",
    tags=["alarms"],
    responses=NOT_FOUND,
)
async def delete_rule(access: WriteAccessDep, conn: ConnDep, rule_id: RuleIdPath) -> Response:
    """Delete a rule with its alarms and their history. Needs `sensors:write`."""
    cur = await conn.execute(
        f"DELETE FROM alarm_rules WHERE rule_id = %(rule_id)s AND {city_filter('city')} RETURNING 1",
        {"rule_id": rule_id, "cities": access.cities_param()},
    )
    if await cur.fetchone() is None:
        raise access.not_found(f"no alarm rule {rule_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/alarms", summary="List alarms", tags=["alarms"])
async def list_alarms(
    access: ReadAccessDep,
    conn: ConnDep,
    page: PageDep,
    state: Annotated[
        Literal["active", "acknowledged", "cleared", "open"] | None,
        Query(description="Only alarms in this state (`open`: active or acknowledged)."),
    ] = None,
    severity: Annotated[Severity | None, Query(description="Only alarms of this severity.")] = None,
    city: Annotated[str | None, Query(max_length=64, description="Only alarms of this city.")] = None,
    sensor_id: Annotated[
        str | None, Query(max_length=64, pattern=rf"^{IDENTIFIER_PATTERN}$", description="Only this sensor's.")
    ] = None,
    rule_id: Annotated[str | None, Query(max_length=64, description="Only this rule's.")] = None,
) -> AlarmsPublic:
    """Alarm episodes, newest `raised_at` first."""
    after = page.after(2)
    after_at, after_id = None, None
    if after is not None:
        try:
            after_at = utc_instant("the cursor's time", _parse_time(str(after[0])))
            after_id = int(str(after[1]))
        except ValueError:
            raise ProblemError(400, "the cursor is not valid") from None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE {city_filter('a.city')}"
            " AND (%(state)s::text IS NULL OR a.state = %(state)s"
            "      OR (%(state)s = 'open' AND a.state <> 'cleared'))"
            " AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)"
            " AND (%(sensor_id)s::text IS NULL OR s.sensor_id = %(sensor_id)s)"
            " AND (%(rule_id)s::text IS NULL OR a.rule_id = %(rule_id)s)"
            " AND (%(after_at)s::timestamptz IS NULL OR (a.raised_at, a.alarm_id) < (%(after_at)s, %(after_id)s))"
            " ORDER BY a.raised_at DESC, a.alarm_id DESC LIMIT %(limit)s",
            {
                "cities": access.cities_param(city),
                "state": state,
                "severity": severity,
                "sensor_id": sensor_id,
                "rule_id": rule_id,
                "after_at": after_at,
                "after_id": after_id,
                "limit": page.limit + 1,
            },
        )
        rows = await cur.fetchall()
    items = [AlarmPublic.model_validate(alarm_object(r)) for r in rows[: page.limit]]
    next_cursor = None
    if len(rows) > page.limit:
        last = rows[page.limit - 1]
        next_cursor = encode_cursor([last["raised_at"].isoformat(), int(last["alarm_id"])])
    return AlarmsPublic(items=items, next_cursor=next_cursor)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@router.get("/alarms/{alarm_id}", summary="One alarm", tags=["alarms"], responses=NOT_FOUND)
async def get_alarm(access: ReadAccessDep, conn: ConnDep, alarm_id: AlarmIdPath) -> AlarmPublic:
    query = f"SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.alarm_id = %s"
    row = await visible_row(conn, access, query, (alarm_id,), f"no alarm {alarm_id}")
    return AlarmPublic.model_validate(alarm_object(row))


@router.post(
    "/alarms/{alarm_id}/acknowledge",
    summary="Acknowledge an alarm",
    tags=["alarms"],
    responses={**NOT_FOUND, 409: problem_doc("The alarm is not active (already acknowledged, or cleared).")},
)
async def acknowledge(
    access: WriteAccessDep,
    conn: ConnDep,
    alarm_id: AlarmIdPath,
    body: Annotated[Acknowledgement | None, Body()] = None,
) -> AlarmPublic:
    """Acknowledge an active alarm, with an optional note: it stays open (the rule raises nothing new for its
    sensor) until its condition clears. Announced as an `acknowledged` event. Needs `sensors:write`."""
    note = body.note if body is not None else None
    async with conn.transaction():
        cur = await conn.execute("SELECT city, state FROM alarms WHERE alarm_id = %s FOR UPDATE", (alarm_id,))
        row = await cur.fetchone()
        if row is None or not access.sees(row[0]):
            raise access.not_found(f"no alarm {alarm_id}")
        alarm = await acknowledge_alarm(conn, alarm_id, note)
        if alarm is None:
            raise ProblemError(409, f"alarm {alarm_id} is {row[1]}; only an active alarm can be acknowledged")
    return AlarmPublic.model_validate(alarm)
