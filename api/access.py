"""Who is calling and what they may see: API keys, scopes and cities, enforced in one place.

Every route that serves or changes data takes the caller as a parameter, and hands it to the query helpers:

    @router.get("/things", summary="List things")
    async def list_things(access: ReadAccessDep, conn: ConnDep, city: CityQuery = None) -> ThingsPublic:
        cur = await conn.execute(
            f"SELECT ... FROM things WHERE {city_filter('city')} ...",
            {"cities": access.cities_param(city), ...},
        )

    @router.get("/things/{thing_id}", ...)
    async def get_thing(access: ReadAccessDep, conn: ConnDep, thing_id: ...) -> ThingPublic:
        row = ...  # looked up by id alone
        if row is None or not access.sees(row["city"]):
            raise access.not_found(f"no thing {thing_id!r}")

The pieces:

- `ReadAccessDep`, `WriteAccessDep`, `AdminAccessDep`: authenticate the request (`Authorization: Bearer <key>`),
  check the key's scope, and give the route an `Access`: the scope and the cities the caller may see (None: all).
- `Access.cities_param(city)` and `city_filter(column)`: the SQL condition and its `%(cities)s` parameter. The
  parameter holds the caller's cities narrowed by an explicit `?city=`; a city the caller may not see gives an
  empty list, so a filter naming another city answers an empty page, never an error that would confirm the city.
- `Access.sees(city)` / `Access.not_found(detail)`: an object of another city answers 404 with the words used
  for an object that does not exist (`visible_row` looks one up by id that way). `Access.check_writable(city)`:
  creating or moving an object into another city answers 403. `Access.check_grant(scope, cities)`: a key may make
  keys of at most its own scope and cities.
- `api.routes.common.sensor_key(conn, access, sensor_id)`: the lookup of every route under `/v1/sensors/{id}`.
- Cached pages (`api.jsonpage.PageSource`) are kept apart per set of cities; the SSE stream filters events on
  their city.

Rejected messages whose topic names no city, like events without a city, are seen by keys without cities only.

`check_routes(app)` runs when the app is built and again when it starts: a route that is neither open
(`OPEN_PATHS`) nor takes one of the three dependencies as a parameter stops the API from starting, naming the
route. So a new route cannot forget authentication, and it holds the `Access` it must pass on. That it passes it on
is what tests/api/test_cities.py checks, for every route of the OpenAPI document, with a key limited to one city.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.deps import connection
from api.flight import SingleFlight
from api.problems import ProblemError
from api.settings import ApiSettings
from livinglab.storage.keys import SELECT_LIVE_KEY, ApiKey, Scope, api_key, hash_key

#: Routes anyone may call without a key: they serve no city's data (the dashboard and the API documentation pages
#: and their assets, probes and metrics).
OPEN_PATHS = frozenset(
    {
        "/",
        "/dashboard/districts.json",
        "/docs",
        "/docs/init.js",
        "/docs/assets/{name}",
        "/metrics",
        "/v1/health",
        "/v1/version",
    }
)

_bearer = HTTPBearer(auto_error=False, description="An API key from `livinglab keys create`.")
#: Keys remembered at most (oldest entries go first when full).
_KEY_CACHE_SIZE = 4096
_COLUMN_RE = re.compile(r"\A[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?\Z")


@dataclass(frozen=True, slots=True)
class Access:
    """The caller of one request: its key's scope and the cities it may see and change.

    `cities` None: every city (a key without cities, or a public read without a key). `key_id` None: no key.
    """

    scope: Scope
    cities: frozenset[str] | None
    key_id: int | None = None

    @property
    def limited(self) -> bool:
        return self.cities is not None

    def sees(self, city: str | None) -> bool:
        """Whether an object of `city` exists for this caller (one of no city: for callers without cities only)."""
        return self.cities is None or (city is not None and city in self.cities)

    def cities_param(self, city: str | None = None) -> list[str] | None:
        """The `%(cities)s` parameter of `city_filter`: None for every city, else the cities a query may return
        (`city`, when given, narrows them; a city this caller may not see leaves none)."""
        if city is not None:
            return [city] if self.sees(city) else []
        return None if self.cities is None else sorted(self.cities)

    def not_found(self, detail: str) -> ProblemError:
        """The 404 of an object this caller may not see: the same answer as for an object that does not exist."""
        return ProblemError(404, detail)

    def check_visible(self, city: str | None, detail: str) -> None:
        """Raise `not_found(detail)` unless this caller sees objects of `city`."""
        if not self.sees(city):
            raise self.not_found(detail)

    def check_writable(self, city: str) -> None:
        """403 unless this caller may create objects in `city`."""
        if not self.sees(city):
            raise ProblemError(403, f"this API key is limited to {_listed(self.cities)}; it cannot act in {city!r}")

    def covers(self, cities: Iterable[str]) -> bool:
        """Whether everything a key limited to `cities` (empty: every city) sees, this caller sees too."""
        wanted = set(cities)
        return self.cities is None or (bool(wanted) and wanted <= self.cities)

    def check_grant(self, scope: Scope, cities: Iterable[str]) -> None:
        """403 unless this caller may make a key of `scope` limited to `cities` (empty: every city)."""
        if not self.scope.includes(scope):
            raise ProblemError(403, f"a key of scope {self.scope.value!r} cannot make a key of scope {scope.value!r}")
        if not self.covers(cities):
            raise ProblemError(
                403, f"this API key is limited to {_listed(self.cities)}; a key it makes must be limited to those"
            )

    @property
    def cache_key(self) -> str:
        """Tells apart callers that may get different answers to the same URL."""
        return "*" if self.cities is None else ",".join(sorted(self.cities))


def _listed(cities: frozenset[str] | None) -> str:
    return "every city" if cities is None else ", ".join(repr(c) for c in sorted(cities))


def city_filter(column: str) -> str:
    """SQL that keeps rows whose `column` is among the `%(cities)s` parameter (`Access.cities_param`).

    A row whose city is NULL passes only when the parameter is NULL (a caller without cities)."""
    if not _COLUMN_RE.match(column):
        raise ValueError(f"not a column name: {column!r}")
    return f"(%(cities)s::text[] IS NULL OR {column} = ANY(%(cities)s))"


async def visible_row(
    conn: AsyncConnection[Any], access: Access, query: str, params: Sequence[Any] | Mapping[str, Any], missing: str
) -> dict[str, Any]:
    """The row `query` finds (it selects a `city` column), looked up by id alone; `access.not_found(missing)` when
    there is none or it is of a city the caller does not see."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    if row is None or not access.sees(row["city"]):
        raise access.not_found(missing)
    return row


#: SQL that keeps keys (rows of api_keys) that `Access.covers`: with the `%(cities)s` of `Access.cities_param()`.
COVERED_KEY_FILTER = "(%(cities)s::text[] IS NULL OR (cardinality(cities) > 0 AND cities <@ %(cities)s::text[]))"


# ---- authentication ------------------------------------------------------------------------------------------


class KeyCache:
    """key hash -> (ApiKey or None for an unknown key, expiry on the monotonic clock).

    Keys are remembered for `key_cache_s` seconds, so a busy dashboard does not cost a key lookup per request; a
    key revoked through another API process stops working within that time (in this process: at once).

    Requests that miss together share one lookup (`lookup`): when a busy key's entry expires, every request that
    arrives before the answer would otherwise query the database for the same key (in a 20 s run of about 720
    requests/s on one key, 44-47 lookups instead of 4).
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[ApiKey | None, float]] = {}
        self._lookups: SingleFlight[bytes, ApiKey | None] = SingleFlight()
        #: Moves on every `forget`, so a lookup that started before a revocation does not cache what it read.
        self._generation = 0

    def get(self, key_hash: bytes) -> tuple[bool, ApiKey | None]:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, key_hash: bytes, key: ApiKey | None) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= _KEY_CACHE_SIZE:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key_hash] = (key, time.monotonic() + self.ttl_s)

    def forget(self, key_hash: bytes) -> None:
        self._generation += 1
        self._entries.pop(key_hash, None)
        self._lookups.forget(key_hash)

    async def lookup(self, key_hash: bytes, load: Callable[[], Awaitable[ApiKey | None]]) -> ApiKey | None:
        """The cached key, or the answer of the lookup under way for it, or `load()` (then cached)."""
        hit, key = self.get(key_hash)
        if hit:
            return key
        generation = self._generation
        return await self._lookups.run(key_hash, lambda: self._load(key_hash, load, generation))

    async def _load(
        self, key_hash: bytes, load: Callable[[], Awaitable[ApiKey | None]], generation: int
    ) -> ApiKey | None:
        key = await load()
        if generation == self._generation:
            self.put(key_hash, key)
        return key


async def _lookup_key(request: Request, token: str) -> ApiKey | None:
    state = request.app.state

    async def load() -> ApiKey | None:
        async with connection(state.pool, state.settings.pool_timeout_s, state.idle_check) as conn:
            cur = await conn.execute(SELECT_LIVE_KEY, (key_hash,))
            row = await cur.fetchone()
        return api_key(row) if row else None

    key_hash = hash_key(token)
    cache: KeyCache = state.key_cache
    return await cache.lookup(key_hash, load)


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None, needed: Scope) -> Access:
    settings: ApiSettings = request.app.state.settings
    if credentials is None:
        if needed is Scope.READ and settings.public_read:
            access = Access(Scope.READ, None)
            request.state.access = access
            return access
        raise ProblemError(401, "an API key is required (Authorization: Bearer <key>)")
    key = await _lookup_key(request, credentials.credentials)
    if key is None:
        raise ProblemError(401, "the API key is not valid")
    if not key.scope.includes(needed):
        raise ProblemError(403, f"this key's scope {key.scope.value!r} does not include {needed.value!r}")
    access = Access(key.scope, key.cities or None, key.id)
    # Kept for the helpers that serve the request without being handed the Access (the page cache).
    request.state.access = access
    return access


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def read_access(request: Request, credentials: Credentials) -> Access:
    """The caller of a read route (scope `read` or above, or no key when reads are public)."""
    return await _authenticate(request, credentials, Scope.READ)


async def write_access(request: Request, credentials: Credentials) -> Access:
    """The caller of a route that changes the registry or requests replays (scope `sensors:write` or above)."""
    return await _authenticate(request, credentials, Scope.SENSORS_WRITE)


async def admin_access(request: Request, credentials: Credentials) -> Access:
    """The caller of an administration route (scope `admin`)."""
    return await _authenticate(request, credentials, Scope.ADMIN)


ReadAccessDep = Annotated[Access, Depends(read_access)]
WriteAccessDep = Annotated[Access, Depends(write_access)]
AdminAccessDep = Annotated[Access, Depends(admin_access)]

_ACCESS_DEPENDENCIES = frozenset({read_access, write_access, admin_access})


def request_access(request: Request) -> Access:
    """The Access of a request whose route took one (for helpers that serve it, such as the page cache)."""
    access = getattr(request.state, "access", None)
    if not isinstance(access, Access):
        raise RuntimeError(f"{request.url.path}: the route takes no ReadAccessDep, WriteAccessDep or AdminAccessDep")
    return access


# ---- the guard -----------------------------------------------------------------------------------------------


class UnguardedRouteError(RuntimeError):
    """A route serves data without taking the caller's Access (see the module docstring)."""


def _api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route of the app, however deep its router was included."""
    route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if route_contexts is None:  # FastAPI before lazy router inclusion: app.routes holds the routes themselves
        yield from ((r.path, r) for r in app.routes if isinstance(r, APIRoute))
        return
    for context in route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.path, context.original_route


def unguarded_routes(app: FastAPI) -> list[str]:
    """`METHOD path` of every route that is not open and takes no Access parameter."""
    found = []
    for path, route in _api_routes(app):
        if path in OPEN_PATHS:
            continue
        if not any(d.name and d.call in _ACCESS_DEPENDENCIES for d in route.dependant.dependencies):
            found.append(f"{','.join(sorted(route.methods or ()))} {path}")
    return found


def check_routes(app: FastAPI) -> None:
    """Refuse an app with a route that neither is open nor takes the caller's Access as a parameter."""
    found = unguarded_routes(app)
    if found:
        raise UnguardedRouteError(
            f"routes without the caller's Access: {'; '.join(found)}. Take `access: ReadAccessDep` (or "
            "WriteAccessDep, AdminAccessDep) from api.access as a parameter and filter with it (docs/api.md); "
            "a route that serves no city's data and needs no key goes in api.access.OPEN_PATHS"
        )
