"""The interactive API documentation at `/docs` (Swagger UI), served from the platform itself.

FastAPI's default page loads Swagger UI from a CDN, on the same origin where the dashboard keeps the operator's API
key, and does not work offline. Here the assets come from the `swagger-ui-bundle-v2` package (Swagger UI's own
distribution files, Apache-2.0) and only an allow-list of them is served, under `/docs/assets/`. The page has no
inline script (its start-up code is `/docs/init.js`), so it runs under a content security policy as strict as the
dashboard's: this origin only, for scripts, styles, images and requests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from api.problems import ProblemError
from api.routes.dashboard import SECURITY_HEADERS

DOCS_PATH = "/docs"

#: The files the page loads, and their media types; nothing else of the bundle is served.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - API documentation</title>
  <link rel="stylesheet" href="{docs}/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="{docs}/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{docs}/assets/swagger-ui-bundle.js"></script>
  <script src="{docs}/init.js"></script>
</body>
</html>
"""

# No validator badge (it would send the document to validator.swagger.io); the key typed into "Authorize" stays in
# the page's memory, never in storage.
_INIT = """\
window.ui = SwaggerUIBundle({
  url: "%s",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
});
"""

_HEADERS = {"Cache-Control": "no-cache", **SECURITY_HEADERS}


def _asset_dir() -> Path:
    return Path(str(swagger_ui_path))


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` for `app.openapi_url` (create the app with `docs_url=None`)."""
    router = APIRouter(include_in_schema=False)
    page = _PAGE.format(title=app.title, docs=DOCS_PATH)
    init = _INIT % (app.openapi_url or "/openapi.json")
    directory = _asset_dir()

    @router.get(DOCS_PATH)
    async def docs_page() -> Response:
        return HTMLResponse(page, headers=_HEADERS)

    @router.get(f"{DOCS_PATH}/init.js")
    async def docs_init() -> Response:
        return Response(init, media_type="text/javascript; charset=utf-8", headers=_HEADERS)

    @router.get(DOCS_PATH + "/assets/{name}")
    async def docs_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise ProblemError(404, f"no documentation asset {name!r}")
        return FileResponse(directory / name, media_type=media_type, headers=_HEADERS)

    app.include_router(router)
