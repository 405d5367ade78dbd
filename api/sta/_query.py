"""Reading SensorThings entities: one SQL statement per collection page, built from allow-listed parts.

A collection page is

    SELECT e.* FROM (<entity set's source>) e
    WHERE <the caller's cities> AND <the navigation's scope> AND <$filter> AND <keyset after the last page>
    ORDER BY <$orderby>, <unique tiebreak> LIMIT $top + 1 [OFFSET $skip]

with every value bound as a parameter. Pages go on through `@iot.nextLink`, which carries the keyset of the last
row (`$skiptoken`) whenever the order's columns cannot be null, so page N costs what page 1 costs: the
Observations of one Datastream are read straight off the `(sensor_key, quantity, ts)` primary key in either
direction. A `$skip` the client sends is an OFFSET on that first page only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.access import Access, city_filter
from api.pagination import decode_cursor, encode_cursor
from api.problems import ProblemError
from api.sta._entities import DATASTREAMS, ENTITY_SETS, ISPU, OBSERVATIONS, Column, EntitySet, Relation, iso
from api.sta._entities import scoped_observations as scoped_observations_source
from api.sta._filter import FilterError
from api.sta._options import Options
from api.sta._translate import SqlType, Translation, translate_filter

_ALIAS_RE = re.compile(r"\be\.")
#: Characters left as they are in @iot.nextLink query strings (readable `$top=100`, `Things('x')`).
_LINK_SAFE = "$'(),:/"


@dataclass(frozen=True)
class Scope:
    """Which rows of an entity set a request reads: all, those related to one parent row, or those of a
    dedicated source (the Observations of one Datastream)."""

    condition: str | None = None  # SQL over `e`
    params: tuple[tuple[str, Any], ...] = ()
    source: str | None = None
    order: tuple[str, ...] | None = None  # default order / unique columns of a dedicated source
    only_sensor: str | None = None


@dataclass(frozen=True)
class _OrderKey:
    sql: str
    type: SqlType
    nullable: bool
    descending: bool
    field: str  # the source column the row holds it in


def _field_of(column: Column) -> str:
    return column.sql.removeprefix("e.").split("::")[0]


def _bad(message: str) -> ProblemError:
    return ProblemError(400, message)


def quote_id(value: str) -> str:
    return "'" + quote(value.replace("'", "''"), safe=":-_.") + "'"


class StaReader:
    """Answers SensorThings reads for one request, as the caller `access` (cities) sees them."""

    def __init__(self, conn: AsyncConnection[Any], access: Access, base_url: str) -> None:
        self.conn = conn
        self.access = access
        self.base = base_url.rstrip("/")
        self._subqueries = 0

    # ---- SQL pieces ------------------------------------------------------------------------------------------

    def resolver(self, es: EntitySet, alias: str = "e") -> Any:
        def resolve(path: tuple[str, ...]) -> tuple[str, SqlType]:
            column = es.column(path)
            if column is not None:
                return _ALIAS_RE.sub(f"{alias}.", column.sql), column.type
            relation = es.relations.get(path[0])
            if relation is not None and not relation.many and len(path) > 1:
                target = ENTITY_SETS[relation.target]
                self._subqueries += 1
                inner_alias = f"t{self._subqueries}"
                inner, kind = self.resolver(target, inner_alias)(path[1:])
                return (
                    f"(SELECT {inner} FROM ({target.source}) {inner_alias}"
                    f" WHERE {inner_alias}.{relation.target_column} = {alias}.{relation.column} LIMIT 1)",
                    kind,
                )
            known = ", ".join(sorted(p for p in es.columns if not p.startswith("@")))
            raise FilterError(
                f"$filter: {es.singular} has no property {'/'.join(path)!r} to filter on (known: {known})"
            )

        return resolve

    def _order_keys(self, es: EntitySet, options: Options, scope: Scope) -> list[_OrderKey]:
        keys: list[_OrderKey] = []
        for path, descending in options.orderby:
            column = es.column(path)
            if column is None:
                raise _bad(f"$orderby: {es.singular} has no property {'/'.join(path)!r} to order by")
            keys.append(_OrderKey(column.sql, column.type, column.nullable, descending, _field_of(column)))
        unique = scope.order or es.unique
        for name in unique:
            if not any(k.field == name for k in keys):
                column = next(c for c in es.columns.values() if _field_of(c) == name)
                keys.append(_OrderKey(column.sql, column.type, False, False, name))
        return keys

    @staticmethod
    def _order_sql(keys: list[_OrderKey]) -> str:
        parts = []
        for key in keys:
            sql = f'{key.sql} COLLATE "C"' if key.type is SqlType.TEXT else key.sql
            parts.append(f"{sql} {'DESC' if key.descending else 'ASC'}")
        return ", ".join(parts)

    @staticmethod
    def _keyset(keys: list[_OrderKey], token: str, out: Translation, query_digest: str) -> str:
        try:
            values = decode_cursor(token, len(keys) + 1)
        except ProblemError:
            values = None
        # The last element ties the token to the query it came from: one made by hand, or moved to another
        # query (whose order it does not describe), is refused rather than answered wrongly.
        if values is None or values.pop() != query_digest:
            raise _bad("$skiptoken is not valid for this request (take it from an @iot.nextLink)")
        typed: list[str] = []
        for key, value in zip(keys, values, strict=True):
            try:
                if key.type is SqlType.TIME:
                    parsed: Any = datetime.fromisoformat(str(value))
                    if parsed.tzinfo is None:
                        raise ValueError
                elif key.type is SqlType.NUMBER:
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise ValueError
                    parsed = float(value)
                elif key.type is SqlType.TEXT:
                    if not isinstance(value, str):
                        raise ValueError
                    parsed = value
                else:
                    raise ValueError
            except ValueError:
                raise _bad("$skiptoken is not valid") from None
            typed.append(out.bind(parsed, key.type))
        ors = []
        for i, key in enumerate(keys):
            ands = []
            for prior, bound in zip(keys[:i], typed[:i], strict=True):
                ands.append(f"{prior.sql} = {bound}")
            sql = f'({key.sql} COLLATE "C")' if key.type is SqlType.TEXT else key.sql
            ands.append(f"{sql} {'<' if key.descending else '>'} {typed[i]}")
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")"

    def _where(
        self, es: EntitySet, options: Options, scope: Scope, out: Translation
    ) -> tuple[list[str], dict[str, Any]]:
        params: dict[str, Any] = {"only_sensor": scope.only_sensor, **dict(scope.params)}
        where = []
        if es.city is not None:
            where.append(city_filter(f"e.{es.city}"))
            params["cities"] = self.access.cities_param()
        if scope.condition:
            where.append(scope.condition)
        if options.filter is not None:
            try:
                where.append(translate_filter(options.filter, self.resolver(es), out))
            except FilterError as exc:
                raise _bad(str(exc)) from None
        return where, params

    # ---- reads -----------------------------------------------------------------------------------------------

    async def _fetch(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def collection(
        self, es: EntitySet, options: Options, scope: Scope, path: str
    ) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """(entities as JSON, @iot.nextLink or None, @iot.count or None) of one page."""
        check_shape(es, options)
        out = Translation("p")
        where, params = self._where(es, options, scope, out)
        keys = self._order_keys(es, options, scope)
        keyset_ok = not any(k.nullable for k in keys)
        page_where = list(where)
        offset = options.skip
        if options.skiptoken is not None:
            if not keyset_ok:
                raise _bad("$skiptoken is not valid for this order")
            page_where.append(self._keyset(keys, options.skiptoken, out, _digest(path, options)))
            offset = 0
        source = scope.source or es.source
        where_sql = " AND ".join(page_where) or "TRUE"
        query = (
            f"SELECT e.* FROM ({source}) e WHERE {where_sql} ORDER BY {self._order_sql(keys)}"
            f" LIMIT {options.top + 1:d}" + (f" OFFSET {offset:d}" if offset else "")
        )
        rows = await self._fetch(query, {**params, **out.params})
        count = None
        if options.count:
            count_out = Translation("c")
            count_where, count_params = self._where(es, options, scope, count_out)
            count_rows = await self._fetch(
                f"SELECT count(*) AS n FROM ({source}) e WHERE {' AND '.join(count_where) or 'TRUE'}",
                {**count_params, **count_out.params},
            )
            count = int(count_rows[0]["n"])
        more = len(rows) > options.top
        rows = rows[: options.top]
        next_link = None
        if more and rows:
            if keyset_ok:
                last = rows[-1]
                token = encode_cursor([*(_jsonable(last[k.field]) for k in keys), _digest(path, options)])
                next_link = self._link(path, options, skiptoken=token)
            else:
                next_link = self._link(path, options, skip=options.skip + options.top)
        entities = [await self.render(es, row, options) for row in rows]
        return entities, next_link, count

    def _link(self, path: str, options: Options, *, skip: int | None = None, skiptoken: str | None = None) -> str:
        pairs = [(k, v) for k, v in options.raw if k not in ("$skip", "$skiptoken")]
        if skip is not None:
            pairs.append(("$skip", str(skip)))
        if skiptoken is not None:
            pairs.append(("$skiptoken", skiptoken))
        return f"{self.base}/{path}?{urlencode(pairs, safe=_LINK_SAFE, quote_via=quote)}"

    async def one(self, es: EntitySet, entity_id: str, scope: Scope | None = None) -> dict[str, Any] | None:
        """The row of `es` with this id (within `scope`), if the caller sees it."""
        if es is OBSERVATIONS and scope is None:
            return await self._observation(entity_id)
        scope = scope or Scope()
        out = Translation("p")
        where, params = self._where(es, Options(), scope, out)
        where.append("e.id = %(entity_id)s")
        params["entity_id"] = entity_id
        if scope.source is not None and es is OBSERVATIONS:
            # `<datastream>:<time>`: the time is the key of the Datastream's table (a reading's ts, an ISPU's
            # window_end = resultTime, a traffic hour's start = phenomenonTime): one index probe, not a scan.
            try:
                at = datetime.fromisoformat(entity_id.split(":", 2)[2])
            except (ValueError, IndexError):
                return None
            if at.tzinfo is None:
                return None
            column = "result_time" if entity_id.split(":", 2)[1] == ISPU else "phenomenon_time"
            where.append(f"e.{column} = %(entity_time)s")
            params["entity_time"] = at
        if es is DATASTREAMS and scope.only_sensor is None:
            params["only_sensor"] = entity_id.partition(":")[0]
        source = scope.source or es.source
        rows = await self._fetch(f"SELECT e.* FROM ({source}) e WHERE {' AND '.join(where)} LIMIT 1", params)
        return rows[0] if rows else None

    async def _observation(self, entity_id: str) -> dict[str, Any] | None:
        """An Observation by id, `<sensor_id>:<quantity>:<time>`: looked up in its Datastream's table."""
        sensor_id, _, rest = entity_id.partition(":")
        quantity, _, _ = rest.partition(":")
        datastream = await self.one(DATASTREAMS, f"{sensor_id}:{quantity}")
        if datastream is None:
            return None
        relation = DATASTREAMS.relations["Observations"]
        return await self.one(OBSERVATIONS, entity_id, self.related_scope(DATASTREAMS, datastream, relation))

    def related_scope(self, es: EntitySet, row: dict[str, Any], relation: Relation) -> Scope:
        """The rows of `relation`'s target related to `row` of `es`."""
        target = ENTITY_SETS[relation.target]
        if es is DATASTREAMS and target is OBSERVATIONS:
            return Scope(
                source=scoped_observations_source(row["series"]),
                params=(
                    ("ds_id", row["id"]),
                    ("ds_sensor", row["sensor_id"]),
                    ("ds_quantity", row["quantity"]),
                    ("ds_city", row["city"]),
                    ("ds_key", row["sensor_key"]),
                    ("ds_code", row["code"]),
                ),
                order=("phenomenon_time",),
            )
        only_sensor = None
        if target is DATASTREAMS and relation.target_column in ("thing_id", "sensor_id"):
            only_sensor = row[relation.column]
        return Scope(
            condition=f"e.{relation.target_column} = %(parent)s",
            params=(("parent", row[relation.column]),),
            only_sensor=only_sensor,
        )

    def self_link(self, es: EntitySet, entity_id: str) -> str:
        return f"{self.base}/{es.name}({quote_id(entity_id)})"

    async def render(self, es: EntitySet, row: dict[str, Any], options: Options) -> dict[str, Any]:
        """One entity as JSON: @iot.id, @iot.selfLink, the properties ($select), navigation links, expansions."""
        self_link = self.self_link(es, row["id"])
        entity: dict[str, Any] = {"@iot.id": row["id"], "@iot.selfLink": self_link}
        body = es.to_json(row)
        if options.select is None:
            entity.update(body)
            entity.update({f"{name}@iot.navigationLink": f"{self_link}/{name}" for name in es.relations})
        else:
            for name in options.select:
                if name in ("id", "@iot.id"):
                    continue
                if name in body:
                    entity[name] = body[name]
                elif name in es.relations:
                    entity[f"{name}@iot.navigationLink"] = f"{self_link}/{name}"
                else:
                    raise _no_property(es, name)
        for expand in options.expand:
            relation = _relation(es, expand.relation)
            target = ENTITY_SETS[relation.target]
            scope = self.related_scope(es, row, relation)
            path = f"{es.name}({quote_id(row['id'])})/{expand.relation}"
            if relation.many:
                items, next_link, count = await self.collection(target, expand.options, scope, path)
                entity[expand.relation] = items
                if next_link:
                    entity[f"{expand.relation}@iot.nextLink"] = next_link
                if count is not None:
                    entity[f"{expand.relation}@iot.count"] = count
            else:
                single = replace(expand.options, top=1, skip=0)
                items, _, _ = await self.collection(target, single, scope, path)
                entity[expand.relation] = items[0] if items else None
        return entity


def check_shape(es: EntitySet, options: Options) -> None:
    """400 for a `$select` or `$expand` naming what `es` does not have, even when no row would show it."""
    known = {"id", "@iot.id", *es.selectable, *es.relations}
    for name in options.select or ():
        if name not in known:
            raise _no_property(es, name)
    for expand in options.expand:
        check_shape(ENTITY_SETS[_relation(es, expand.relation).target], expand.options)


def _no_property(es: EntitySet, name: str) -> ProblemError:
    return _bad(f"$select: {es.singular} has no property {name!r} (properties: {', '.join(es.selectable)})")


def _relation(es: EntitySet, name: str) -> Relation:
    """The navigation property `name` of `es`; 400 when it has none."""
    relation = es.relations.get(name)
    if relation is None:
        raise _bad(f"$expand: {es.singular} has no navigation property {name!r} (it has: {', '.join(es.relations)})")
    return relation


def _digest(path: str, options: Options) -> str:
    """A short digest of what a page's order depends on: the resource and every option but the position."""
    kept = [(k, v) for k, v in options.raw if k not in ("$skip", "$skiptoken", "$top", "$count")]
    return hashlib.blake2s(repr((unquote(path), kept)).encode(), digest_size=6).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return value
