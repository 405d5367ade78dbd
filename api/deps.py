"""Dependencies shared by the routes: the database pool, settings and authentication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.problems import ProblemError
from api.settings import ApiSettings
from livinglab.storage.keys import ApiKey, Scope, hash_key

_bearer = HTTPBearer(auto_error=False, description="An API key from `livinglab keys create`.")


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def get_conn(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
) -> AsyncIterator[AsyncConnection[Any]]:
    async with pool.connection() as conn:
        yield conn


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ConnDep = Annotated[AsyncConnection[Any], Depends(get_conn)]


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, needed: Scope
) -> ApiKey | None:
    settings: ApiSettings = request.app.state.settings
    if credentials is None:
        if needed is Scope.READ and settings.public_read:
            return None
        raise ProblemError(401, "an API key is required (Authorization: Bearer <key>)")
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, scope, name FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (hash_key(credentials.credentials),),
        )
        row = await cur.fetchone()
    if row is None:
        raise ProblemError(401, "the API key is not valid")
    key = ApiKey(row[0], Scope(row[1]), row[2])
    if not key.scope.includes(needed):
        raise ProblemError(403, f"this key's scope {key.scope.value!r} does not include {needed.value!r}")
    return key


def require(scope: Scope) -> Any:
    """A dependency that admits requests whose key includes `scope`."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey | None:
        return await _authenticate(request, credentials, scope)

    return Depends(dependency)


ReadAccess = require(Scope.READ)
SensorsWriteAccess = require(Scope.SENSORS_WRITE)
AdminAccess = require(Scope.ADMIN)
