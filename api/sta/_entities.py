"""The SensorThings entity sets mapped onto the registry, the readings and the hourly indices (CONTRACT.md
section 7).

Each entity set is a SQL source (a SELECT over the platform's tables giving named columns, aliased `e` by the
queries), the allow-list of properties `$filter`/`$orderby` may name (property path -> column and type), its
navigation properties, and how a row becomes JSON. Ids are strings: a sensor's id for Things, Locations,
HistoricalLocations, Sensors and FeaturesOfInterest, a quantity's name for ObservedProperties, `<sensor_id>:<quantity>`
for Datastreams and `<sensor_id>:<quantity>:<time>` for Observations (`<time>` the reading's `ts`, an ISPU's
`window_end`, a traffic hour's start, ISO 8601 UTC with `Z`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from api.sta._translate import SqlType
from livinglab.precision import sql_round_field

#: Pseudo-quantities: each air station's hourly ISPU, each traffic counter's hourly degree of saturation.
ISPU = "ispu"
DEGREE_OF_SATURATION = "degree_of_saturation"

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEO_JSON = "application/geo+json"

_ROAD_FIELDS = (
    "interval_s", "road_type", "lanes", "lane_width_m", "carriageway_width_m", "direction_split_pct",
    "road_function", "city_population", "side_friction_factor", "capacity_override_pcu_h",
)  # fmt: skip
_NUMBER_FIELDS = frozenset(
    {"interval_s", "lanes", "lane_width_m", "carriageway_width_m", "direction_split_pct", "city_population",
     "side_friction_factor", "capacity_override_pcu_h"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Column:
    sql: str  # an expression over the source's columns, alias `e`
    type: SqlType
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Relation:
    """A navigation property: the rows of `target` whose `target_column` equals this row's `column`."""

    target: str  # entity set name
    column: str
    target_column: str
    many: bool


@dataclass(frozen=True)
class EntitySet:
    name: str  # the entity set, e.g. "Things"
    singular: str  # the entity type, e.g. "Thing"
    source: str  # SELECT ... giving the columns the rest names
    columns: dict[str, Column]  # property path ("name", "properties/city") -> column
    selectable: tuple[str, ...]  # properties of the JSON
    relations: dict[str, Relation]
    to_json: Callable[[dict[str, Any]], dict[str, Any]]
    city: str | None = "city"  # column holding the row's city (None: no city, visible to every key)
    order: tuple[str, ...] = ("id",)  # the default (and unique) order: source columns
    unique: tuple[str, ...] = ("id",)  # columns that tell rows apart (the keyset's tiebreak)
    fields: tuple[str, ...] = field(default=())  # source columns fetched

    def column(self, path: tuple[str, ...]) -> Column | None:
        return self.columns.get("/".join(path))


def iso(value: datetime) -> str:
    """ISO 8601 UTC with `Z`, microseconds only when there are any (as `livinglab_iso`)."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def _text(name: str, nullable: bool = False) -> Column:
    return Column(f"e.{name}", SqlType.TEXT, nullable)


_IDENTITY = {"id": _text("id"), "@iot.id": _text("id")}
_NAMED = {**_IDENTITY, "name": _text("name"), "description": _text("description")}


# ---- Things, Locations, HistoricalLocations, Sensors, FeaturesOfInterest: one per sensor ------------------------

_SENSOR_SOURCE = (
    "SELECT s.sensor_id AS id, s.sensor_id AS name, s.name AS description, s.sensor_key, s.city, s.district, s.kind,"
    " s.lat, s.lon, s.updated_at, " + ", ".join(f"s.{f}" for f in _ROAD_FIELDS) + " FROM sensors s"
)


def _thing_properties(row: dict[str, Any]) -> dict[str, Any]:
    props = {"sensor_id": row["id"], "city": row["city"], "district": row["district"], "kind": row["kind"]}
    props.update({f: row[f] for f in _ROAD_FIELDS if row.get(f) is not None})
    return props


def _thing_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "description": row["description"], "properties": _thing_properties(row)}


def _geo_json(row: dict[str, Any], description: str, geometry: str) -> dict[str, Any]:
    """A Location or FeatureOfInterest: the sensor's position as a GeoJSON point under `geometry`."""
    return {
        "name": row["name"],
        "description": description,
        "encodingType": GEO_JSON,
        geometry: {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
    }


def _location_json(row: dict[str, Any]) -> dict[str, Any]:
    return _geo_json(row, f"position of {row['description']}", "location")


def _foi_json(row: dict[str, Any]) -> dict[str, Any]:
    return _geo_json(row, f"the air or road at {row['description']}", "feature")


def _sensor_json(row: dict[str, Any]) -> dict[str, Any]:
    kind = "air-quality station" if row["kind"] == "air" else "traffic counter"
    return {
        "name": row["name"],
        "description": row["description"],
        "encodingType": "text/plain",
        "metadata": f"livinglab {kind} {row['id']}, reporting every {row['interval_s']} s",
    }


_THING_COLUMNS = {
    **_NAMED,
    "properties/sensor_id": _text("id"),
    "properties/city": _text("city"),
    "properties/district": _text("district"),
    "properties/kind": _text("kind"),
    **{
        f"properties/{f}": Column(f"e.{f}::float8", SqlType.NUMBER, True)
        if f in _NUMBER_FIELDS
        else _text(f, nullable=True)
        for f in _ROAD_FIELDS
    },
}

THINGS = EntitySet(
    "Things",
    "Thing",
    _SENSOR_SOURCE,
    _THING_COLUMNS,
    ("name", "description", "properties"),
    {
        "Locations": Relation("Locations", "id", "id", True),
        "HistoricalLocations": Relation("HistoricalLocations", "id", "thing_id", True),
        "Datastreams": Relation("Datastreams", "id", "thing_id", True),
    },
    _thing_json,
)
LOCATIONS = EntitySet(
    "Locations",
    "Location",
    _SENSOR_SOURCE,
    _NAMED,
    ("name", "description", "encodingType", "location"),
    {
        "Things": Relation("Things", "id", "id", True),
        "HistoricalLocations": Relation("HistoricalLocations", "id", "thing_id", True),
    },
    _location_json,
)
HISTORICAL_LOCATIONS = EntitySet(
    "HistoricalLocations",
    "HistoricalLocation",
    "SELECT s.sensor_id AS id, s.sensor_id AS thing_id, s.updated_at AS time, s.city FROM sensors s",
    {**_IDENTITY, "time": Column("e.time", SqlType.TIME)},
    ("time",),
    {
        "Thing": Relation("Things", "thing_id", "id", False),
        "Locations": Relation("Locations", "thing_id", "id", True),
    },
    lambda row: {"time": iso(row["time"])},
)
SENSORS = EntitySet(
    "Sensors",
    "Sensor",
    _SENSOR_SOURCE,
    _NAMED,
    ("name", "description", "encodingType", "metadata"),
    {"Datastreams": Relation("Datastreams", "id", "sensor_id", True)},
    _sensor_json,
)
FEATURES_OF_INTEREST = EntitySet(
    "FeaturesOfInterest",
    "FeatureOfInterest",
    _SENSOR_SOURCE,
    _NAMED,
    ("name", "description", "encodingType", "feature"),
    {"Observations": Relation("Observations", "id", "sensor_id", True)},
    _foi_json,
)


# ---- ObservedProperties: one per quantity, and the two indices --------------------------------------------------

_INDEX_PROPERTIES = (
    f"SELECT '{ISPU}'::text AS id, 'ISPU'::text AS unit, 'Indonesian air pollution standard index (24 h)'::text AS"
    " description"
    f" UNION ALL SELECT '{DEGREE_OF_SATURATION}', '1', 'PKJI degree of saturation: hourly flow / capacity'"
)
OBSERVED_PROPERTIES = EntitySet(
    "ObservedProperties",
    "ObservedProperty",
    "SELECT name AS id, name, 'livinglab quantity ' || name || ' (' || unit || ')' AS description,"
    " 'https://livinglab.example/quantities#' || name AS definition FROM quantities"
    " UNION ALL SELECT id, id, description, 'https://livinglab.example/quantities#' || id FROM ("
    + _INDEX_PROPERTIES
    + ") i",
    {**_NAMED, "definition": _text("definition")},
    ("name", "definition", "description"),
    {"Datastreams": Relation("Datastreams", "id", "quantity", True)},
    lambda row: {"name": row["name"], "definition": row["definition"], "description": row["description"]},
    city=None,
)


# ---- Datastreams: per sensor and reported quantity, plus the hourly indices -------------------------------------

#: `series`: which table holds the Observations. `%(only_sensor)s` (bound to NULL unless known) narrows the
#: source to one sensor's Datastreams before the per-quantity probes.
#: `series`: which table holds the Observations: readings (`raw`), ispu_hourly or traffic_hourly.
DATASTREAM_SOURCE = (
    "SELECT s.sensor_id || ':' || q.name AS id, s.sensor_id || ':' || q.name AS name,"
    " q.name || ' of ' || s.name AS description, s.sensor_id AS thing_id, s.sensor_id, q.name AS quantity, s.city,"
    " s.sensor_key, q.code, q.unit, 'raw'::text AS series"
    " FROM sensors s CROSS JOIN quantities q"
    " WHERE (%(only_sensor)s::text IS NULL OR s.sensor_id = %(only_sensor)s)"
    " AND EXISTS (SELECT FROM readings r WHERE r.sensor_key = s.sensor_key AND r.quantity = q.code)"
    f" UNION ALL SELECT s.sensor_id || ':{ISPU}', s.sensor_id || ':{ISPU}', 'hourly ISPU of ' || s.name,"
    f" s.sensor_id, s.sensor_id, '{ISPU}', s.city, s.sensor_key, NULL::int2, 'ISPU', '{ISPU}'"
    " FROM sensors s WHERE s.kind = 'air' AND (%(only_sensor)s::text IS NULL OR s.sensor_id = %(only_sensor)s)"
    f" UNION ALL SELECT s.sensor_id || ':{DEGREE_OF_SATURATION}', s.sensor_id || ':{DEGREE_OF_SATURATION}',"
    " 'hourly degree of saturation of ' || s.name,"
    f" s.sensor_id, s.sensor_id, '{DEGREE_OF_SATURATION}', s.city, s.sensor_key, NULL::int2, '1',"
    f" '{DEGREE_OF_SATURATION}' FROM sensors s WHERE s.kind = 'traffic'"
    " AND (%(only_sensor)s::text IS NULL OR s.sensor_id = %(only_sensor)s)"
)

_UNIT_NAMES = {
    "ug/m3": "microgram per cubic metre",
    "Cel": "degree Celsius",
    "%RH": "percent relative humidity",
    "count": "count",
    "km/h": "kilometre per hour",
    "%": "percent",
    "ISPU": "ISPU index value",
    "1": "ratio (dimensionless)",
}


def _datastream_json(row: dict[str, Any]) -> dict[str, Any]:
    unit = row["unit"]
    return {
        "name": row["name"],
        "description": row["description"],
        "observationType": OM_MEASUREMENT,
        "unitOfMeasurement": {
            "name": _UNIT_NAMES.get(unit, unit),
            "symbol": unit,
            "definition": f"https://ucum.org/ucum#{unit}" if unit not in ("ISPU",) else "https://ispu.menlhk.go.id",
        },
    }


DATASTREAMS = EntitySet(
    "Datastreams",
    "Datastream",
    DATASTREAM_SOURCE,
    {
        **_NAMED,
        "unitOfMeasurement/symbol": _text("unit"),
        "Thing/id": _text("thing_id"),
        "Sensor/id": _text("sensor_id"),
        "ObservedProperty/id": _text("quantity"),
    },
    ("name", "description", "observationType", "unitOfMeasurement"),
    {
        "Thing": Relation("Things", "thing_id", "id", False),
        "Sensor": Relation("Sensors", "sensor_id", "id", False),
        "ObservedProperty": Relation("ObservedProperties", "quantity", "id", False),
        "Observations": Relation("Observations", "id", "datastream_id", True),
    },
    _datastream_json,
)


# ---- Observations -----------------------------------------------------------------------------------------------

#: Columns of every Observations source.
_OBS_COLUMNS = "id, phenomenon_time, phenomenon_end, result_time, result, datastream_id, sensor_id, quantity, city"


def readings_source(scoped: bool) -> str:
    """Observations of readings; `scoped`: of one Datastream, `%(ds_key)s`/`%(ds_code)s` (one index range)."""
    if scoped:
        return (
            "SELECT %(ds_id)s::text || ':' || livinglab_iso(r.ts) AS id, r.ts AS phenomenon_time,"
            " NULL::timestamptz AS phenomenon_end, r.ts AS result_time, r.value AS result,"
            " %(ds_id)s::text AS datastream_id, %(ds_sensor)s::text AS sensor_id, %(ds_quantity)s::text AS quantity,"
            " %(ds_city)s::text AS city FROM readings r WHERE r.sensor_key = %(ds_key)s AND r.quantity = %(ds_code)s"
        )
    return (
        "SELECT s.sensor_id || ':' || q.name || ':' || livinglab_iso(r.ts), r.ts, NULL::timestamptz, r.ts, r.value,"
        " s.sensor_id || ':' || q.name, s.sensor_id, q.name, s.city"
        " FROM readings r JOIN sensors s ON s.sensor_key = r.sensor_key JOIN quantities q ON q.code = r.quantity"
    )


def ispu_source(scoped: bool) -> str:
    """Observations of hourly ISPU values: the 24 hours `[window_end - 24h, window_end)`, labelled `window_end`."""
    rows = (
        f"SELECT s.sensor_id || ':{ISPU}:' || livinglab_iso(i.window_end), i.window_end - interval '24 hours',"
        f" i.window_end, i.window_end, i.ispu::float8, s.sensor_id || ':{ISPU}', s.sensor_id, '{ISPU}'::text, s.city"
        " FROM ispu_hourly i JOIN sensors s ON s.sensor_key = i.sensor_key"
    )
    return rows + (" WHERE i.sensor_key = %(ds_key)s" if scoped else "")


#: A degree of saturation as `/v1/traffic/segments` serves it (livinglab.precision): `result`, and so `$filter` and
#: `$orderby` on it, see the served figure, not the stored float.
_SERVED_SATURATION = sql_round_field(DEGREE_OF_SATURATION, sql.SQL("t.degree_of_saturation")).as_string(None)


def saturation_source(scoped: bool) -> str:
    """Observations of hourly degrees of saturation: the hour `[hour, hour + 1h)`, labelled by its end, the value
    rounded as `/v1/traffic/segments` serves it."""
    rows = (
        f"SELECT s.sensor_id || ':{DEGREE_OF_SATURATION}:' || livinglab_iso(t.hour), t.hour,"
        f" t.hour + interval '1 hour', t.hour + interval '1 hour', {_SERVED_SATURATION},"
        f" s.sensor_id || ':{DEGREE_OF_SATURATION}', s.sensor_id, '{DEGREE_OF_SATURATION}'::text, s.city"
        " FROM traffic_hourly t JOIN sensors s ON s.sensor_key = t.sensor_key"
    )
    return rows + (" WHERE t.sensor_key = %(ds_key)s" if scoped else "")


def _column_names(source: str) -> str:
    return f"SELECT * FROM ({source}) o ({_OBS_COLUMNS})"


def scoped_observations(series: str) -> str:
    """The Observations source of one Datastream whose Observations live in `series`."""
    if series == "raw":
        return readings_source(True)
    return _column_names(ispu_source(True) if series == ISPU else saturation_source(True))


def _observation_json(row: dict[str, Any]) -> dict[str, Any]:
    start, end = row["phenomenon_time"], row["phenomenon_end"]
    result = row["result"]
    if row["quantity"] == ISPU and result is not None:  # an integer index, as `/v1/air/ispu` serves it
        result = int(result)
    return {
        "phenomenonTime": iso(start) if end is None else f"{iso(start)}/{iso(end)}",
        "resultTime": iso(row["result_time"]),
        "result": result,
    }


_OBSERVATION_COLUMNS = {
    **_IDENTITY,
    "phenomenonTime": Column("e.phenomenon_time", SqlType.TIME),
    "resultTime": Column("e.result_time", SqlType.TIME),
    "result": Column("e.result", SqlType.NUMBER, nullable=True),
    "Datastream/id": _text("datastream_id"),
    "Datastream/Thing/id": _text("sensor_id"),
    "Datastream/Sensor/id": _text("sensor_id"),
    "Datastream/ObservedProperty/id": _text("quantity"),
    "FeatureOfInterest/id": _text("sensor_id"),
}

OBSERVATIONS = EntitySet(
    "Observations",
    "Observation",
    _column_names(" UNION ALL ".join((readings_source(False), ispu_source(False), saturation_source(False)))),
    _OBSERVATION_COLUMNS,
    ("phenomenonTime", "resultTime", "result"),
    {
        "Datastream": Relation("Datastreams", "datastream_id", "id", False),
        "FeatureOfInterest": Relation("FeaturesOfInterest", "sensor_id", "id", False),
    },
    _observation_json,
)

ENTITY_SETS: dict[str, EntitySet] = {
    e.name: e
    for e in (
        THINGS, LOCATIONS, HISTORICAL_LOCATIONS, DATASTREAMS, SENSORS, OBSERVATIONS, OBSERVED_PROPERTIES,
        FEATURES_OF_INTEREST,
    )
}  # fmt: skip
