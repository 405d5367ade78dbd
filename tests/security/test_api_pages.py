"""The pages the API serves to browsers, and its JSON bodies, over a real socket: the same security headers on
every dashboard asset, Swagger UI from the platform itself (and working offline, in a real Chromium), duplicate
JSON member names refused, and database refusals answered in the platform's own words."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import httpx
import pytest

from api.routes.dashboard import ASSETS_DIR, SECURITY_HEADERS
from api.routes.docs import ASSETS
from tests.support.api import admin_key, serving

pytestmark = pytest.mark.integration

SENSOR = {"sensor_id": "aq-dup", "city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.2, "lon": 106.8}


@pytest.fixture(scope="module")
def key(database: str) -> str:
    return admin_key(database, "pages")


@pytest.fixture(scope="module")
def client(database: str) -> Iterator[httpx.Client]:
    with serving(database) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _assert_security_headers(response: httpx.Response) -> None:
    assert response.status_code == 200, response.request.url
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)


def test_every_dashboard_asset_carries_the_pages_security_headers(client: httpx.Client) -> None:
    paths = ["/", "/dashboard/index.html", "/dashboard/districts.json"]
    paths += [f"/dashboard/{p.name}" for p in sorted(ASSETS_DIR.iterdir()) if p.is_file()]
    for path in paths:
        _assert_security_headers(client.get(path))
    assert "default-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_the_api_docs_come_from_the_platform(client: httpx.Client) -> None:
    page = client.get("/docs")
    _assert_security_headers(page)
    assert "<script>" not in page.text  # no inline script, so the policy needs no 'unsafe-inline'
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert referenced
    assert all(ref.startswith("/docs/") for ref in referenced), referenced
    for ref in referenced:
        _assert_security_headers(client.get(ref))
    assert {ref.rsplit("/", 1)[1] for ref in referenced} == {*ASSETS, "init.js"}
    init = client.get("/docs/init.js")
    assert '"/openapi.json"' in init.text
    assert "http" not in init.text  # no other origin, and no validator badge
    missing = client.get("/docs/assets/index.html")  # the bundle's demo page (it loads a petstore) is not served
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


@pytest.mark.browser
def test_swagger_ui_renders_offline_under_its_policy(client: httpx.Client) -> None:
    chromium = os.environ.get("LIVINGLAB_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        pytest.skip(f"no Chromium at {chromium} (apt install chromium, or set LIVINGLAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = str(client.base_url).rstrip("/")
    foreign: list[str] = []
    console: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-quic"]
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))
            # Offline: every request to another origin fails, as it would on a network without internet.
            page.route(re.compile(r"^(?!" + re.escape(base) + ").*"), lambda route: route.abort())
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            operations = page.locator(".opblock").count()
        finally:
            browser.close()
    assert operations >= 10
    assert foreign == []
    assert [c for c in console if "Content Security Policy" in c or c.startswith("error")] == []


def test_duplicate_json_member_names_are_refused(client: httpx.Client, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = '{"sensor_id": "aq-dup", "city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.2, "lon": 106.8'
    for duplicate in (', "lat": 1.0}', ', "l\\u0061t": 1.0}', ', "extra": {"a": 1, "a": 2}}'):
        response = client.post("/v1/sensors", content=body + duplicate, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "repeats the member name" in response.json()["detail"]
    replaced = client.put("/v1/sensors/aq-dup", content=body + ', "lat": 1.0}', headers=headers)
    assert replaced.status_code == 400
    assert client.get("/v1/sensors/aq-dup", headers=headers).status_code == 404  # nothing was stored
    created = client.post("/v1/sensors", content=body + "}", headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["lat"] == -6.2


def test_database_refusals_are_answered_in_the_platforms_words(client: httpx.Client, key: str) -> None:
    response = client.get("/v1/sensors", params={"city": "jak\x00arta"}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail == "a text value holds a character the platform cannot store (such as NUL)"
    assert "PostgreSQL" not in response.text
    assert "0x00" not in response.text
