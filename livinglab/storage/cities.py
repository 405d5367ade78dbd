"""Per-city settings in the database: the service-level targets of CONTRACT.md sections 4 and 8.

A city may set its own target share for any of the three services; a service it has not set keeps the configured
default (`LIVINGLAB_TARGET_AIR`, `_TRAFFIC`, `_DATA`). The targets live in `service_targets` (one row per city and
service that was set), so every role reads the same numbers: the API serves and applies them
(`/v1/cities/{city}`, `/v1/service-levels`), and other roles read them with `city_targets` or `all_city_targets`,
or join the table themselves as `coalesce(service_targets.target, <default>)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import psycopg

Service = Literal["air", "traffic", "data"]
SERVICES: tuple[Service, ...] = get_args(Service)


@dataclass(frozen=True, slots=True)
class ServiceTargets:
    """Target shares, each in [0, 1]: ISPU <= 100 station-hours, LOS-met sensor-hours, received readings."""

    air: float
    traffic: float
    data: float

    def as_dict(self) -> dict[Service, float]:
        return {"air": self.air, "traffic": self.traffic, "data": self.data}

    def merged(self, overrides: Mapping[str, float]) -> ServiceTargets:
        """These targets with the services in `overrides` replaced (unknown services are ignored)."""
        return replace(self, **{s: float(overrides[s]) for s in SERVICES if s in overrides})


#: The targets one city set: (city) -> rows of (service, target).
SELECT_CITY_TARGETS = "SELECT service, target FROM service_targets WHERE city = %s"
#: Every target set: rows of (city, service, target), by city.
SELECT_ALL_TARGETS = "SELECT city, service, target FROM service_targets ORDER BY city, service"
#: Forget what a city set: (city).
DELETE_CITY_TARGETS = "DELETE FROM service_targets WHERE city = %s"
#: Set one: (city, service, target).
INSERT_CITY_TARGET = "INSERT INTO service_targets (city, service, target) VALUES (%s, %s, %s)"


def city_targets(conn: psycopg.Connection[Any], city: str, defaults: ServiceTargets) -> ServiceTargets:
    """The targets in force for `city`: what it set, else `defaults`."""
    rows = conn.execute(SELECT_CITY_TARGETS, (city,)).fetchall()
    return defaults.merged(dict(rows))


def all_city_targets(conn: psycopg.Connection[Any], defaults: ServiceTargets) -> dict[str, ServiceTargets]:
    """The targets in force for every city that set any (other cities use `defaults`)."""
    overrides: dict[str, dict[str, float]] = {}
    for city, service, target in conn.execute(SELECT_ALL_TARGETS).fetchall():
        overrides.setdefault(city, {})[service] = target
    return {city: defaults.merged(values) for city, values in overrides.items()}


def set_city_targets(conn: psycopg.Connection[Any], city: str, targets: Mapping[str, float]) -> None:
    """Replace what `city` set with `targets` (a service left out goes back to its default). Call in a
    transaction."""
    conn.execute(DELETE_CITY_TARGETS, (city,))
    for service in SERVICES:
        if service in targets:
            conn.execute(INSERT_CITY_TARGET, (city, service, float(targets[service])))
