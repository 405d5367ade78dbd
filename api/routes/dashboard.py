"""The operators' dashboard: `GET /` and its static assets under `/dashboard/`.

The page is plain HTML, CSS and JavaScript modules shipped inside the `api` package (`api/dashboard/`), with no
front-end libraries and nothing loaded from other hosts: its content security policy allows this origin only.
It reads the public HTTP API with the API key the operator enters (kept in the browser's localStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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

# Revalidate on every load (the ETag makes that a 304), so an upgrade never leaves a mix of old and new modules.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard_page() -> Response:
    """The dashboard's HTML page."""
    return FileResponse(
        ASSETS_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer"},
    )


class _Assets(StaticFiles):
    """Static files with the dashboard's caching headers (JavaScript always as `text/javascript`)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        if path.endswith(".js") and response.status_code == 200:
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at `/` and its assets under `/dashboard/`."""
    app.include_router(router)
    app.mount(ASSETS_PATH, _Assets(directory=ASSETS_DIR), name="dashboard")
