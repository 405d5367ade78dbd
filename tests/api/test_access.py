"""The enforcement point of the city rule (api.access): what an Access lets through, and the guard that refuses
an app with a route that does not take one."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI

from api import ApiSettings, create_app
from api.access import (
    OPEN_PATHS,
    Access,
    ReadAccessDep,
    UnguardedRouteError,
    check_routes,
    city_filter,
    read_access,
    unguarded_routes,
)
from api.problems import ProblemError
from livinglab.storage.keys import Scope

UNLIMITED = Access(Scope.ADMIN, None, 1)
JAKARTA = Access(Scope.ADMIN, frozenset({"jakarta"}), 2)
TWO = Access(Scope.SENSORS_WRITE, frozenset({"jakarta", "bandung"}), 3)


def _app() -> FastAPI:
    return create_app(ApiSettings(database_url="postgresql://unused"))


def test_an_unlimited_caller_sees_every_city_and_filters_by_choice() -> None:
    assert UNLIMITED.cities_param() is None
    assert UNLIMITED.cities_param("bandung") == ["bandung"]
    assert UNLIMITED.sees("bandung")
    assert UNLIMITED.sees(None)


def test_a_limited_caller_sees_its_cities_and_a_filter_on_another_leaves_nothing() -> None:
    assert TWO.cities_param() == ["bandung", "jakarta"]
    assert JAKARTA.cities_param("jakarta") == ["jakarta"]
    assert JAKARTA.cities_param("bandung") == []
    assert not JAKARTA.sees("bandung")
    # A rejected message whose topic names no city, or an event without one: unlimited callers only.
    assert not JAKARTA.sees(None)


def test_another_citys_object_is_a_404_and_creating_there_a_403() -> None:
    with pytest.raises(ProblemError) as raised:
        JAKARTA.check_visible("bandung", "no sensor 'x'")
    assert (raised.value.status, raised.value.detail) == (404, "no sensor 'x'")
    JAKARTA.check_visible("jakarta", "no sensor 'x'")
    with pytest.raises(ProblemError) as raised:
        JAKARTA.check_writable("bandung")
    assert raised.value.status == 403
    JAKARTA.check_writable("jakarta")


def test_a_key_makes_keys_of_at_most_its_scope_and_cities() -> None:
    TWO.check_grant(Scope.READ, ["jakarta"])
    TWO.check_grant(Scope.SENSORS_WRITE, ["jakarta", "bandung"])
    for scope, cities in ((Scope.ADMIN, ["jakarta"]), (Scope.READ, []), (Scope.READ, ["jakarta", "surabaya"])):
        with pytest.raises(ProblemError) as raised:
            TWO.check_grant(scope, cities)
        assert raised.value.status == 403
    UNLIMITED.check_grant(Scope.ADMIN, [])
    assert UNLIMITED.covers([])
    assert not TWO.covers([])
    assert TWO.covers(["bandung"])


def test_callers_seeing_different_cities_never_share_a_cached_page() -> None:
    keys = {a.cache_key for a in (UNLIMITED, JAKARTA, TWO, Access(Scope.READ, frozenset({"bandung"})))}
    assert len(keys) == 4
    assert Access(Scope.READ, frozenset({"jakarta"})).cache_key == JAKARTA.cache_key


def test_city_filter_takes_column_names_only() -> None:
    assert city_filter("s.city") == "(%(cities)s::text[] IS NULL OR s.city = ANY(%(cities)s))"
    for bad in ("city; DROP TABLE sensors", "1city", "a.b.c", ""):
        with pytest.raises(ValueError, match="not a column"):
            city_filter(bad)


def test_every_route_of_the_app_takes_the_callers_access() -> None:
    app = _app()
    assert unguarded_routes(app) == []
    # Not vacuous: the app has routes, and the open ones are the only ones left out.
    paths = set(app.openapi()["paths"])
    assert {"/v1/sensors", "/v1/keys", "/v1/cities/{city}", "/v1/stream"} <= paths
    assert "/v1/health" in OPEN_PATHS
    assert "/v1/sensors" not in OPEN_PATHS


def test_a_route_without_the_callers_access_stops_the_app() -> None:
    router = APIRouter()

    @router.get("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    # Authenticated, but the route holds no Access to filter with: refused as well.
    @router.get("/v1/authenticated-only", dependencies=[Depends(read_access)])
    async def authenticated_only() -> dict[str, str]:
        return {}

    @router.get("/v1/fine")
    async def fine(access: ReadAccessDep) -> dict[str, str]:
        return {}

    app = _app()
    app.include_router(router)
    with pytest.raises(UnguardedRouteError) as raised:
        check_routes(app)
    message = str(raised.value)
    assert "GET /v1/forgotten" in message
    assert "GET /v1/authenticated-only" in message
    assert "/v1/fine" not in message
    assert "ReadAccessDep" in message


def test_an_access_taken_through_annotated_depends_counts() -> None:
    app = FastAPI()

    @app.get("/v1/things")
    async def things(caller: Annotated[Access, Depends(read_access)]) -> dict[str, str]:
        return {}

    check_routes(app)


def test_the_old_dependency_names_say_where_the_new_ones_are() -> None:
    with pytest.raises(ImportError, match="ReadAccessDep"):
        from api.deps import ReadAccess  # noqa: F401
