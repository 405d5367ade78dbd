"""`/sta/v1.1`: the OGC SensorThings API 1.1, read-only, over the registry, the readings and the hourly indices.

Resource paths: `/<EntitySet>`, `/<EntitySet>(<id>)`, then any chain of navigation properties with or without an
id (`/Things('aq-01')/Datastreams('aq-01:pm25')/Observations`), and a property of an entity
(`/Things('aq-01')/name`, `.../name/$value`). The query options and `$filter` are in `api.sta._options` and
`api.sta._filter`; what is not implemented answers 400 naming it (the service root lists what is).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from api.access import ReadAccessDep
from api.deps import ConnDep
from api.problems import ProblemError
from api.sta._entities import ENTITY_SETS, EntitySet
from api.sta._filter import FilterError
from api.sta._options import SUPPORTED_OPTIONS, OptionError, Options, parse_options
from api.sta._query import Scope, StaReader, check_shape
from api.sta._translate import FUNCTIONS

router = APIRouter(prefix="/sta/v1.1", tags=["SensorThings"], include_in_schema=False)

#: What the service implements, as OGC conformance classes (SensorThings 1.1 part 1, sensing) ...
CONFORMANCE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
)
#: ... and in detail, since `request-data` is implemented only in part.
IMPLEMENTATION = {
    "readOnly": True,
    "queryOptions": list(SUPPORTED_OPTIONS),
    "filter": {
        "comparison": ["eq", "ne", "gt", "ge", "lt", "le"],
        "logical": ["and", "or", "not"],
        "arithmetic": ["add", "sub", "mul", "div", "mod"],
        "functions": sorted(f"{name}()" for name in FUNCTIONS),
        "literals": ["number", "string", "true", "false", "null", "date-time"],
        "paths": "properties of the entity and of entities reached through single-valued navigation properties",
    },
    "notImplemented": [
        "create, update and delete",
        "$resultFormat (dataArray)",
        "$ref and $value of collections",
        "geospatial functions (geo.*, st_*)",
        "any() and all() over collections in $filter",
        "time intervals and durations as $filter literals",
        "MultiDatastreams, Tasking, batch requests, MQTT",
    ],
    "notes": [
        "an interval phenomenonTime (hourly indices) compares and orders by its start",
        "@iot.nextLink carries a keyset ($skiptoken) when the order allows, else $skip",
    ],
}

_SEGMENT_RE = re.compile(r"\A(?P<name>\$?[A-Za-z]+)(?:\((?P<id>.*)\))?\Z", re.DOTALL)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _entity_id(text: str) -> str:
    if len(text) >= 2 and text.startswith("'") and text.endswith("'"):
        inner = text[1:-1]
        if "'" in inner.replace("''", ""):
            raise ProblemError(400, f"the id {text!r} is not a valid string literal")
        return inner.replace("''", "'")
    if re.fullmatch(r"-?\d+", text):
        return text  # an unquoted number: ids here are strings, so it only ever names an entity whose id it spells
    raise ProblemError(400, f"the id {text!r} is not a quoted string (ids are strings: Things('aq-01'))")


@router.get("", summary="SensorThings service root")
async def service_root(access: ReadAccessDep, request: Request) -> Response:
    """The entity sets and what this service implements."""
    del access  # every key may read the root: it names no city's data
    base = _base(request)
    return _json(
        {
            "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
            "serverSettings": {"conformance": list(CONFORMANCE), "livinglab": IMPLEMENTATION},
        }
    )


def _options(request: Request) -> Options:
    try:
        return parse_options(request.query_params.multi_items())
    except (OptionError, FilterError) as exc:
        raise ProblemError(400, str(exc)) from None


@router.get("/{resource:path}", summary="SensorThings resources")
async def resource(access: ReadAccessDep, conn: ConnDep, request: Request, resource: str) -> Response:
    """An entity set, an entity, a navigation from an entity, or a property of an entity."""
    if resource in ("", "/"):
        return await service_root(access, request)
    options = _options(request)
    reader = StaReader(conn, access, _base(request))
    # A filter whose arithmetic overflows is refused by PostgreSQL: api.problems answers that 400.
    return await _answer(reader, resource.strip("/"), options)


async def _answer(reader: StaReader, resource: str, options: Options) -> Response:
    segments = resource.split("/")
    es: EntitySet | None = None
    row: dict[str, Any] | None = None
    scope = Scope()
    path: list[str] = []
    for index, segment in enumerate(segments):
        match = _SEGMENT_RE.match(segment)
        if match is None:
            raise ProblemError(400, f"{segment!r} is not a resource path segment")
        name, raw_id = match.group("name"), match.group("id")
        if es is None:  # the first segment: an entity set
            es = ENTITY_SETS.get(name)
            if es is None:
                raise ProblemError(404, f"no entity set {name!r} (entity sets: {', '.join(ENTITY_SETS)})")
        elif row is None:
            raise ProblemError(400, f"{segment!r} follows a collection; name one entity first, e.g. {name}('<id>')")
        elif name in es.relations:
            relation = es.relations[name]
            scope = reader.related_scope(es, row, relation)
            es = ENTITY_SETS[relation.target]
            row = None
            if not relation.many:
                single = await reader.collection(es, Options(top=1), scope, "")
                if not single[0]:
                    raise ProblemError(404, f"no {name} of {'/'.join(path)}")
                entity_id = single[0][0]["@iot.id"]
                row = await reader.one(es, entity_id)
                if row is None:
                    raise ProblemError(404, f"no {name} of {'/'.join(path)}")
                path = [f"{es.name}({_quoted(entity_id)})"]
                scope = Scope()
                if raw_id is not None:
                    raise ProblemError(400, f"{name} is a single entity; it takes no id")
                continue
        elif name in es.to_json(row) or name == "id":
            return _property(es, row, name, segments[index + 1 :])
        else:
            raise ProblemError(404, f"{es.singular} has no property or navigation {name!r}")
        path.append(segment if raw_id is None else f"{name}({raw_id})")
        if raw_id is not None:
            entity_id = _entity_id(raw_id)
            row = await reader.one(es, entity_id, scope)
            if row is None:
                raise ProblemError(404, f"no {es.singular} {entity_id!r}")
            path = [f"{es.name}({_quoted(entity_id)})"]
            scope = Scope()
    assert es is not None
    if row is not None:
        if options.skiptoken is not None or options.skip or options.count or options.top != 100 or options.orderby:
            bad = next(k for k, _ in options.raw if k in ("$skiptoken", "$skip", "$count", "$top", "$orderby"))
            raise ProblemError(400, f"{bad} applies to collections, not to one entity")
        if options.filter is not None:
            raise ProblemError(400, "$filter applies to collections, not to one entity")
        check_shape(es, options)
        return _json(await reader.render(es, row, options))
    items, next_link, count = await reader.collection(es, options, scope, "/".join(path))
    body: dict[str, Any] = {}
    if count is not None:
        body["@iot.count"] = count
    body["value"] = items
    if next_link:
        body["@iot.nextLink"] = next_link
    return _json(body)


def _quoted(entity_id: str) -> str:
    return "'" + entity_id.replace("'", "''") + "'"


def _property(es: EntitySet, row: dict[str, Any], name: str, rest: list[str]) -> Response:
    value = row["id"] if name == "id" else es.to_json(row)[name]
    if not rest:
        return _json({"@iot.id" if name == "id" else name: value})
    if rest == ["$value"]:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return Response(text, media_type="text/plain; charset=utf-8")
    raise ProblemError(400, f"{'/'.join(rest)!r} after a property is not supported (only $value)")
