"""The dashboard with two cities, in a real headless Chromium: the city switch, and a map that fits the chosen city.

The API serves a database seeded with Jakarta and Bandung (tests/support/cities.py), 0.8 degrees apart; a map
that framed both would squeeze each city's markers into a corner, so how much of the drawing the markers span
shows whether it fits the chosen one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from livinglab.launch import create_database, drop_database, unique_name
from tests.browser.conftest import Dashboard
from tests.support.api import serving
from tests.support.cities import CITY_A, CITY_B, DISTRICTS, TwoCities, seed_two_cities

pytestmark = [pytest.mark.browser, pytest.mark.integration]

_SPREAD = """() => {
    const box = document.querySelector('#map').getBoundingClientRect();
    const rects = [...document.querySelectorAll('#map g.sensor')].map(g => g.getBoundingClientRect());
    const inside = rects.every(r => r.left >= box.left && r.right <= box.right && r.top >= box.top
        && r.bottom <= box.bottom);
    const xs = rects.map(r => (r.left + r.right) / 2), ys = rects.map(r => (r.top + r.bottom) / 2);
    return {inside, width: (Math.max(...xs) - Math.min(...xs)) / box.width,
            height: (Math.max(...ys) - Math.min(...ys)) / box.height};
}"""


def _outlines(conn: psycopg.Connection[Any], path: Path) -> None:
    """A square district around each district's sensors, as GeoJSON."""
    features = []
    boxes = conn.execute(
        "SELECT city, district, min(lat), min(lon), max(lat), max(lon) FROM sensors GROUP BY city, district"
    ).fetchall()
    for city, district, south, west, north, east in boxes:
        south, west, north, east = south - 0.006, west - 0.006, north + 0.006, east + 0.006
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        features.append(
            {
                "type": "Feature",
                "properties": {"city": city, "district": district},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


@pytest.fixture(scope="module")
def two_cities(
    pg_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TwoCities]]:
    name = unique_name("llt_browser_cities")
    url = create_database(pg_server_url, name, template=template_database)
    districts = tmp_path_factory.mktemp("cities") / "districts.geojson"
    try:
        with psycopg.connect(url) as conn:
            seeded = seed_two_cities(conn)
            _outlines(conn, districts)
        with serving(url, dashboard_districts=districts) as base:
            yield base, seeded
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def open_page(browser: Any, two_cities: tuple[str, TwoCities]) -> Iterator[Callable[[str], Dashboard]]:
    base, seeded = two_cities
    contexts: list[Any] = []

    def make(label: str) -> Dashboard:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.add_init_script(f"localStorage.setItem('livinglab.apiKey', {seeded.keys[label]!r});")
        page = context.new_page()
        dashboard = Dashboard(page, base)
        page.on("console", lambda m: dashboard.console_errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: dashboard.requests.append(r.url))
        dashboard.open()
        return dashboard

    yield make
    for context in contexts:
        context.close()


def _markers(d: Dashboard) -> set[str]:
    return set(d.page.eval_on_selector_all("#map g.sensor", "els => els.map(e => e.dataset.sensorId)"))


def _districts(d: Dashboard) -> set[str]:
    return set(d.page.eval_on_selector_all("#map .districts path", "els => els.map(e => e.dataset.district)"))


def _rejections(d: Dashboard) -> dict[str, int]:
    items = d.page.eval_on_selector_all(
        "#rejections li[data-reason]", "els => els.map(e => [e.dataset.reason, e.dataset.count])"
    )
    return {reason: int(count) for reason, count in items}


def _assert_fits(d: Dashboard) -> None:
    spread = d.evaluate(_SPREAD)
    assert spread["inside"], "a marker lies outside the map"
    # Markers of one city span much of the drawing in at least one direction (both cities at once: a few %).
    assert max(spread["width"], spread["height"]) > 0.3, spread


def test_a_key_of_both_cities_switches_between_them(
    open_page: Callable[[str], Dashboard], two_cities: tuple[str, TwoCities], artifacts_dir: Path
) -> None:
    _, seeded = two_cities
    d = open_page("all")
    assert d.page.is_visible("#city-select")
    options = d.page.eval_on_selector_all("#city-select option", "els => els.map(e => e.value)")
    assert sorted(options) == sorted([CITY_A, CITY_B])
    for city in (CITY_A, CITY_B):
        d.page.select_option("#city-select", city)
        d.page.wait_for_function(
            "ids => [...document.querySelectorAll('#map g.sensor')].map(g => g.dataset.sensorId).sort().join() == ids",
            arg=",".join(seeded.of(city)),
        )
        d.page.wait_for_selector("#rejections li[data-reason]")
        assert _markers(d) == set(seeded.of(city))
        assert _districts(d) == set(DISTRICTS[city])
        _assert_fits(d)
        # The city's own rejected messages (one per sensor), none of the other city's, and the one of no city.
        assert _rejections(d) == {"out_of_range": 4, "topic_invalid": 1}
        d.page.screenshot(path=artifacts_dir / f"dashboard-city-{city}.png")
    assert d.console_errors == []


def test_a_key_of_one_city_has_no_switch_and_asks_for_nothing_else(
    open_page: Callable[[str], Dashboard], two_cities: tuple[str, TwoCities]
) -> None:
    _, seeded = two_cities
    d = open_page("a-read")
    d.page.wait_for_function("() => document.querySelectorAll('#map g.sensor').length > 0")
    assert d.page.is_hidden("#city-select")
    assert _markers(d) == set(seeded.of(CITY_A))
    assert _districts(d) == set(DISTRICTS[CITY_A])
    _assert_fits(d)
    assert not [url for url in d.requests if CITY_B in url]
    d.page.wait_for_selector("#rejections li[data-reason]")
    assert _rejections(d) == {"out_of_range": 4}  # a limited key is not shown the one of no city
    assert d.page.is_hidden("#banner")
    assert d.console_errors == []
