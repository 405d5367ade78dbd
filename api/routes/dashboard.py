"""The operators' dashboard: `GET /` and its static assets under `/dashboard/`.

The page is plain HTML, CSS and JavaScript modules shipped inside the `api` package (`api/dashboard/`), with no
front-end libraries and nothing loaded from other hosts: its content security policy allows this origin only.
It reads the public HTTP API with the API key the operator enters (kept in the browser's localStorage).

District outlines for the map come from `LIVINGLAB_DASHBOARD_DISTRICTS` (a GeoJSON file, checked at startup and
served, simplified, at `/dashboard/districts.json`); without it the page derives outlines from sensor positions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from livinglab.errors import ConfigurationError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "dashboard"
ASSETS_PATH = "/dashboard"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

#: Sent with the page and with every asset, 404s aside: a browser given any of them directly (a module, the style
#: sheet, the page under /dashboard/index.html) gets the same policy as `/`. The page keeps the operator's key in
#: localStorage, so nothing from another origin may run beside it or frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Revalidate on every load (the ETag makes that a 304), so an upgrade never leaves a mix of old and new modules.
_HEADERS = {"Cache-Control": "no-cache", **SECURITY_HEADERS}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard_page() -> Response:
    """The dashboard's HTML page."""
    return FileResponse(ASSETS_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


class _Assets(StaticFiles):
    """Static files with the dashboard's caching and security headers (JavaScript always as `text/javascript`)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        if path.endswith(".js") and response.status_code == 200:
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response


def _position(value: Any) -> list[float]:
    if not (isinstance(value, list) and len(value) >= 2 and all(isinstance(v, int | float) for v in value[:2])):
        raise ValueError(f"a position is [lon, lat], not {value!r}")
    lon, lat = float(value[0]), float(value[1])
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"position {value!r} is off the globe")
    return [lon, lat]


def _outer_rings(geometry: Any) -> list[list[list[float]]]:
    """The outer ring of each polygon (holes are not drawn), as [lon, lat] positions."""
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        polygons = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        polygons = geometry["coordinates"]
    else:
        raise ValueError(f"a district's geometry is a Polygon or MultiPolygon, not {kind!r}")
    rings = [[_position(p) for p in polygon[0]] for polygon in polygons]
    if any(len(ring) < 3 for ring in rings):
        raise ValueError("a ring needs at least three positions")
    return rings


def load_district_outlines(path: Path) -> list[dict[str, Any]]:
    """District outlines from a GeoJSON FeatureCollection: `[{"city", "district", "rings"}, ...]`."""
    try:
        document = json.loads(path.read_text("utf-8"))
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ValueError("the file is not a GeoJSON FeatureCollection")
        outlines = []
        for feature in document.get("features", []):
            properties = feature.get("properties") or {}
            district = properties.get("district")
            if not isinstance(district, str) or not district:
                raise ValueError("every feature needs a `district` property")
            city = properties.get("city")
            rings = _outer_rings(feature.get("geometry"))
            outlines.append({"city": city if isinstance(city, str) else None, "district": district, "rings": rings})
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConfigurationError(f"LIVINGLAB_DASHBOARD_DISTRICTS ({path}): {exc}") from exc
    return outlines


def install_dashboard(app: FastAPI, *, districts_path: Path | None = None) -> None:
    """Serve the dashboard at `/`, its district outlines and its assets under `/dashboard/`."""
    outlines = load_district_outlines(districts_path) if districts_path else []

    @app.get(f"{ASSETS_PATH}/districts.json", include_in_schema=False)
    async def district_outlines() -> Response:
        return JSONResponse({"items": outlines}, headers=_HEADERS)

    app.include_router(router)
    app.mount(ASSETS_PATH, _Assets(directory=ASSETS_DIR), name="dashboard")
