"""The dashboard's page and assets as the API serves them (no browser needed): every module the page loads is
served with the right type, nothing points at another host, and the wheel ships the assets."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from api.routes.dashboard import ASSETS_DIR, ASSETS_PATH, load_district_outlines
from livinglab.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
# The only absolute URL the assets may hold: the SVG namespace, which is a name, never fetched.
_ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(database_url=database_url))) as client:
        yield client


def _assets_referenced(client: TestClient) -> set[str]:
    """Paths the page loads: from the HTML, then every `import ... from "./x.js"` found, transitively."""
    html = client.get("/").text
    todo = set(re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', html))
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        seen.add(path)
        if path.endswith(".js"):
            body = client.get(path).text
            for module in re.findall(r'from "\./([\w.-]+\.js)"', body):
                if f"{ASSETS_PATH}/{module}" not in seen:
                    todo.add(f"{ASSETS_PATH}/{module}")
    return seen


@pytest.mark.integration
def test_page_is_served_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert '<script type="module" src="/dashboard/app.js">' in response.text


@pytest.mark.integration
def test_every_asset_the_page_loads_is_served(client: TestClient) -> None:
    paths = _assets_referenced(client)
    expected_modules = {f"{ASSETS_PATH}/{p.name}" for p in ASSETS_DIR.glob("*.js")}
    assert expected_modules <= paths, f"modules never loaded by the page: {expected_modules - paths}"
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(types[Path(path).suffix]), path
        assert response.headers["cache-control"] == "no-cache"
    assert client.get(f"{ASSETS_PATH}/no-such-file.js").status_code == 404
    assert client.get(f"{ASSETS_PATH}/../routes/dashboard.py").status_code == 404


def test_assets_reference_no_other_host() -> None:
    for path in ASSETS_DIR.iterdir():
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", path.read_text("utf-8")))
        assert urls <= _ALLOWED_URLS, f"{path.name} refers to {urls - _ALLOWED_URLS}"


@pytest.mark.slow
def test_wheel_ships_the_assets(tmp_path: Path) -> None:
    wheel_builder = pytest.importorskip("hatchling.builders.wheel", reason="hatchling is in the test extra")
    wheels = list(wheel_builder.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    shipped = {n.removeprefix("api/dashboard/") for n in names if n.startswith("api/dashboard/")}
    assert shipped == {p.name for p in ASSETS_DIR.iterdir() if p.is_file()}


def _feature(district: str, geometry: dict[str, object], city: str | None = "jakarta") -> dict[str, object]:
    return {"type": "Feature", "properties": {"district": district, "city": city}, "geometry": geometry}


_SQUARE = [[106.80, -6.20], [106.82, -6.20], [106.82, -6.18], [106.80, -6.18], [106.80, -6.20]]


def test_district_outlines_keep_outer_rings(tmp_path: Path) -> None:
    path = tmp_path / "districts.geojson"
    hole = [[106.805, -6.195], [106.81, -6.195], [106.81, -6.19], [106.805, -6.195]]
    features = [
        _feature("Menteng", {"type": "Polygon", "coordinates": [_SQUARE, hole]}),
        _feature("Gambir", {"type": "MultiPolygon", "coordinates": [[_SQUARE], [_SQUARE[::-1]]]}, city=None),
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert load_district_outlines(path) == [
        {"city": "jakarta", "district": "Menteng", "rings": [_SQUARE]},
        {"city": None, "district": "Gambir", "rings": [_SQUARE, _SQUARE[::-1]]},
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "Feature"}, "FeatureCollection"),
        (
            {"type": "FeatureCollection", "features": [_feature("", {"type": "Polygon", "coordinates": [_SQUARE]})]},
            "district",
        ),
        (
            {"type": "FeatureCollection", "features": [_feature("A", {"type": "Point", "coordinates": [1, 2]})]},
            "Polygon",
        ),
        (
            {"type": "FeatureCollection", "features": [_feature("A", {"type": "Polygon", "coordinates": [[[1, 2]]]})]},
            "three",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [_feature("A", {"type": "Polygon", "coordinates": [[[1, 95]] * 4]})],
            },
            "off the globe",
        ),
    ],
)
def test_bad_district_outlines_are_a_configuration_error(tmp_path: Path, document: object, message: str) -> None:
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigurationError, match=message):
        load_district_outlines(path)


def test_missing_district_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.geojson"):
        load_district_outlines(tmp_path / "missing.geojson")


@pytest.mark.integration
def test_configured_outlines_are_served_to_the_page(database_url: str, tmp_path: Path, client: TestClient) -> None:
    path = tmp_path / "districts.geojson"
    features = [_feature("Menteng", {"type": "Polygon", "coordinates": [_SQUARE]})]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    settings = ApiSettings(database_url=database_url, dashboard_districts=path)
    with TestClient(create_app(settings)) as configured:
        assert configured.get(f"{ASSETS_PATH}/districts.json").json() == {
            "items": [{"city": "jakarta", "district": "Menteng", "rings": [_SQUARE]}]
        }
    # Without the setting the page derives outlines from the sensors.
    assert client.get(f"{ASSETS_PATH}/districts.json").json() == {"items": []}
