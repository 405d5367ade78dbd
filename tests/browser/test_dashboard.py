"""The operators' dashboard in a real headless Chromium, against `livinglab up --simulate`.

Each test opens the page in a fresh browser context and compares what the page shows with what the HTTP API
answers at the same time (polling until both agree, since the simulated city keeps changing). Screenshots are
saved as artifacts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.browser.platform import Dashboard, RunningPlatform, poll
from tests.support.lorawan import chirpstack_topic, chirpstack_uplink

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

OpenDashboard = Callable[..., Dashboard]
ISPU_CATEGORIES = {"Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya"}

#: A marker's shape is its circle (air) or square (traffic); a sensor with an open alarm also has a ring, drawn first.
_MARKERS = """els => els.map(e => ({
    id: e.dataset.sensorId, kind: e.dataset.kind, ispu: e.dataset.ispu ?? null, category: e.dataset.category ?? null,
    los: e.dataset.los ?? null, fill: e.querySelector('circle:not(.alarm-ring), rect').getAttribute('fill'),
    text: e.querySelector('text').textContent}))"""
_AIR_ROWS = """els => els.map(e => ({
    id: e.dataset.sensorId, ispu: e.dataset.ispu ?? null, category: e.dataset.category ?? null,
    badge: e.querySelector('.badge').textContent, categoryText: e.querySelector('.category').textContent}))"""


def markers(d: Dashboard) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in d.page.eval_on_selector_all("#map g.sensor", _MARKERS)}


def air_rows(d: Dashboard) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in d.page.eval_on_selector_all("#air-rows tr", _AIR_ROWS)}


def wait_for_stream(d: Dashboard) -> None:
    d.page.wait_for_selector("#stream-status[data-state=open]", timeout=30_000)


def test_page_loads_without_console_errors(
    open_dashboard: OpenDashboard, platform: RunningPlatform, artifacts_dir: Path
) -> None:
    d = open_dashboard(lang="en")
    d.open()
    wait_for_stream(d)
    d.page.wait_for_timeout(3000)  # let the first live events arrive and render
    d.page.screenshot(path=artifacts_dir / "dashboard-desktop.png", full_page=True)
    # The README's picture: the map, the chart and the index tables.
    d.page.screenshot(
        path=artifacts_dir / "dashboard-overview.png",
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1440, "height": 1400},
    )
    assert d.console_errors == []
    assert d.requests, "the page made no requests"
    foreign = [url for url in d.requests if not url.startswith(f"{platform.base_url}/")]
    assert foreign == [], "the page loaded something from another origin"
    assert d.page.is_hidden("#banner")
    assert d.page.eval_on_selector_all(".panel-error", "els => els.map(e => e.textContent)") == []


def test_map_shows_every_registered_sensor(open_dashboard: OpenDashboard, platform: RunningPlatform) -> None:
    d = open_dashboard()
    d.open()
    registered = {s["sensor_id"]: s["kind"] for s in platform.items("/v1/sensors")}
    shown = markers(d)
    assert {sid: m["kind"] for sid, m in shown.items()} == registered
    # Every marker sits inside the drawing (none projected off the map).
    inside = d.evaluate(
        """() => {
            const box = document.querySelector('#map').getBoundingClientRect();
            return [...document.querySelectorAll('#map g.sensor')].every(g => {
                const r = g.getBoundingClientRect();
                return r.left >= box.left && r.right <= box.right && r.top >= box.top && r.bottom <= box.bottom;
            });
        }"""
    )
    assert inside
    # Choosing a marker chooses its sensor for the charts.
    chosen = next(sid for sid, m in shown.items() if m["kind"] == "traffic")
    d.page.locator(f'#map g.sensor[data-sensor-id="{chosen}"]').dispatch_event("click")
    d.page.wait_for_selector(f'#map g.sensor.selected[data-sensor-id="{chosen}"]')
    assert d.page.input_value("#sensor-select") == chosen
    assert d.page.input_value("#quantity-select") == "kr"
    districts = {s["district"] for s in platform.items("/v1/sensors")}
    outlines = set(d.page.eval_on_selector_all("#map .districts path", "els => els.map(e => e.dataset.district)"))
    assert districts <= outlines
    # `livinglab up --simulate` hands the scenario's district outlines to the map; each sensor lies in its own.
    assert d.page.get_attribute("#map", "data-outlines") == "configured"
    outside = d.evaluate(
        """() => [...document.querySelectorAll('#map g.sensor')].filter(g => {
            const [x, y] = g.getAttribute('transform').match(/[-\\d.]+/g).map(Number);
            const area = document.querySelector(`#map .districts path[data-district="${g.dataset.district}"]`);
            return !area || !area.isPointInFill(new DOMPoint(x, y));
        }).map(g => g.dataset.sensorId)"""
    )
    assert outside == []


def test_station_ispu_and_category_match_the_api(open_dashboard: OpenDashboard, platform: RunningPlatform) -> None:
    d = open_dashboard(lang="en")
    d.open()

    def compare() -> tuple[bool, Any]:
        api = {i["sensor_id"]: i for i in platform.items("/v1/air/ispu")}
        rows, shown = air_rows(d), markers(d)
        differences = []
        for sid, item in api.items():
            row, marker = rows.get(sid), shown.get(sid)
            if row is None or marker is None:
                differences.append((sid, "missing"))
                continue
            if item["ispu"] is None:  # no parameter with 18 valid hours: shown as no data
                if row["ispu"] is not None or marker["text"] != "–":
                    differences.append((sid, "no data", row, marker))
                continue
            expected = {"ispu": str(item["ispu"]), "category": item["category"]}
            if {"ispu": row["ispu"], "category": row["category"]} != expected or row["badge"] != str(item["ispu"]):
                differences.append((sid, "table", row, item))
            if not row["categoryText"].startswith(item["category"]):
                differences.append((sid, "category text", row["categoryText"]))
            if (marker["text"], marker["fill"].lower()) != (str(item["ispu"]), item["colour_hex"].lower()):
                differences.append((sid, "marker", marker, item))
        return bool(api) and not differences, differences

    poll(compare, timeout_s=90, interval_s=2)
    api = [i for i in platform.items("/v1/air/ispu") if i["ispu"] is not None]
    assert api
    assert {i["category"] for i in api} <= ISPU_CATEGORIES
    # The Indonesian palette, not the US one: Sedang is blue.
    palette = {"Baik": "#00cc00", "Sedang": "#0000cc", "Tidak Sehat": "#cccc00"}
    for item in api:
        if item["category"] in palette:
            assert item["colour_hex"].lower() == palette[item["category"]]


def test_new_reading_shows_up_live(
    open_dashboard: OpenDashboard, platform: RunningPlatform, artifacts_dir: Path
) -> None:
    sensor_id = "aq-browsertest-01"
    platform.post(
        "/v1/sensors",
        {
            "sensor_id": sensor_id,
            "city": "jakarta",
            "district": "Menteng",
            "kind": "air",
            "name": "Browser test station",
            "lat": -6.2010,
            "lon": 106.8390,
            "interval_s": 60,
        },
    )
    d = open_dashboard(lang="en")
    d.open(hash_=f"#sensor={sensor_id}&quantity=pm25&range=24h")
    wait_for_stream(d)
    assert sensor_id in markers(d)
    assert d.page.input_value("#sensor-select") == sensor_id
    d.evaluate("() => { window.__sameDocument = true; }")

    value = 77.7
    platform.publish(f"livinglab/v1/jakarta/air/{sensor_id}", {"ts": int(time.time()) - 5, "pm25": value})

    d.page.wait_for_selector(f'#latest li[data-quantity="pm25"][data-mean="{value}"]', timeout=90_000)
    d.page.wait_for_selector(f'#feed li[data-sensor-id="{sensor_id}"][data-quantity="pm25"]', timeout=10_000)
    d.page.wait_for_selector('#chart[data-points="1"]', timeout=10_000)
    assert d.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    assert "77.7" in d.page.text_content('#latest li[data-quantity="pm25"]')
    d.page.screenshot(path=artifacts_dir / "dashboard-live-update.png", full_page=True)
    assert d.console_errors == []


def test_language_switch_changes_the_labels(open_dashboard: OpenDashboard, artifacts_dir: Path) -> None:
    d = open_dashboard(lang="id")
    d.open()
    labels = {
        "h1": ("Living Lab Kota — Panel Operator", "City Living Lab — Operator Dashboard"),
        "#map-panel h2": ("Peta sensor", "Sensor map"),
        "#air-panel h2": ("Kualitas udara (ISPU)", "Air quality (ISPU)"),
        "#service-panel h2": ("Kepatuhan standar pelayanan per wilayah", "Service-level compliance per district"),
        "#quality-panel h2": ("Kualitas data", "Data quality"),
        "#air-table thead th[data-i18n=district]": ("Wilayah", "District"),
    }

    def shown() -> dict[str, str]:
        return {selector: d.page.text_content(selector) for selector in labels}

    assert shown() == {selector: pair[0] for selector, pair in labels.items()}
    assert d.evaluate("() => document.documentElement.lang") == "id"
    categories_before = [r["category"] for r in air_rows(d).values()]

    d.page.click("button[data-lang=en]")
    assert shown() == {selector: pair[1] for selector, pair in labels.items()}
    assert d.evaluate("() => document.documentElement.lang") == "en"
    assert d.page.get_attribute("button[data-lang=en]", "aria-pressed") == "true"
    # ISPU category names stay Indonesian in both languages.
    assert [r["category"] for r in air_rows(d).values()] == categories_before
    d.page.screenshot(path=artifacts_dir / "dashboard-english.png")

    d.page.reload()
    d.page.wait_for_selector("body[data-ready=true]")
    assert d.page.text_content("h1") == labels["h1"][1], "the chosen language is kept"
    d.page.click("button[data-lang=id]")
    assert d.page.text_content("h1") == labels["h1"][0]


def test_usable_on_a_phone_sized_screen(
    open_dashboard: OpenDashboard, platform: RunningPlatform, artifacts_dir: Path
) -> None:
    d = open_dashboard(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    d.open()
    wait_for_stream(d)
    assert d.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert set(markers(d)) == {s["sensor_id"] for s in platform.items("/v1/sensors")}
    map_box = d.page.locator("#map").bounding_box()
    assert map_box is not None
    assert map_box["width"] >= 300
    # Markers stay large enough to tap.
    marker_box = d.page.locator("#map g.sensor").first.bounding_box()
    assert marker_box is not None
    assert marker_box["width"] >= 20
    d.page.tap("button[data-lang=en]")
    assert d.page.text_content("h1") == "City Living Lab — Operator Dashboard"
    d.page.screenshot(path=artifacts_dir / "dashboard-phone.png", full_page=True)
    assert d.console_errors == []


def test_chart_shows_the_aggregates_of_the_chosen_sensor(
    open_dashboard: OpenDashboard, platform: RunningPlatform
) -> None:
    station = next(
        s for s in platform.items("/v1/sensors") if s["kind"] == "air" and s["sensor_id"] != "aq-browsertest-01"
    )
    d = open_dashboard(lang="en")
    d.open()
    d.page.select_option("#sensor-select", station["sensor_id"])
    d.page.select_option("#quantity-select", "pm10")
    d.page.click("button[data-range='7d']")

    def compare(window: str, days: int) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            end = time.time()
            items = platform.items(
                f"/v1/sensors/{station['sensor_id']}/aggregates",
                window=window,
                quantity="pm10",
                start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - days * 86400)),
                limit=1000,
            )
            expected = len([i for i in items if i["mean"] is not None])
            shown = d.page.get_attribute("#chart", "data-points")
            return expected > 0 and shown == str(expected), (shown, expected)

        return check

    poll(compare("1h", 7), timeout_s=60, interval_s=2)
    assert d.page.get_attribute("#chart", "data-window") == "1h"
    assert d.page.locator("#chart svg path.mean").count() >= 1
    assert d.page.locator("#chart .tick.x text").count() >= 5, "one label per day"
    d.page.click("button[data-range='24h']")
    # A new minute may add a window between the page's fetch and the API's answer: compare until they agree.
    poll(compare("1m", 1), timeout_s=90, interval_s=2)
    assert d.page.locator("#chart .tick.x text").count() >= 5, "a label every four hours"
    assert "#sensor=" in d.page.url


def test_service_levels_and_data_quality_match_the_api(
    open_dashboard: OpenDashboard, platform: RunningPlatform
) -> None:
    # One rejected message, so the rejection list has something to count.
    platform.publish("livinglab/v1/jakarta/air/aq-menteng-01", {"ts": int(time.time()), "pm25": -5})
    poll(lambda: (bool(platform.items("/v1/rejected")), None), timeout_s=30)
    d = open_dashboard(lang="en")
    d.open()

    def compare() -> tuple[bool, Any]:
        api = {(i["district"], i["service"]): i for i in platform.items("/v1/service-levels")}
        cells = d.page.eval_on_selector_all(
            "#service-table td.sl",
            "els => els.map(e => [e.closest('tr').dataset.district, e.dataset.service, Number(e.dataset.achieved),"
            " e.dataset.compliant === 'true'])",
        )
        shown = {(district, service): (achieved, compliant) for district, service, achieved, compliant in cells}
        expected = {
            key: (item["achieved"], item["compliant"]) for key, item in api.items() if item["achieved"] is not None
        }
        reasons: dict[str, int] = {}
        for item in platform.items("/v1/rejected"):
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        listed = dict(
            d.page.eval_on_selector_all(
                "#rejections li[data-reason]",
                "els => els.map(e => [e.dataset.reason, Number(e.dataset.count)])",
            )
        )
        quality_rows = set(d.page.eval_on_selector_all("#quality-rows tr", "els => els.map(e => e.dataset.sensorId)"))
        sensors = {s["sensor_id"] for s in platform.items("/v1/sensors")}
        ok = bool(expected) and shown == expected and listed == reasons and quality_rows == sensors
        return ok, {"service": (shown, expected), "rejections": (listed, reasons)}

    poll(compare, timeout_s=180, interval_s=3)  # the page refreshes these every minute
    stale = d.page.eval_on_selector_all("#quality-rows tr[data-stale=true]", "els => els.map(e => e.dataset.sensorId)")
    quality = {q["sensor_id"]: q for q in platform.items("/v1/quality/sensors")}
    # A sensor the simulator feeds every interval is never shown as stale.
    assert "aq-menteng-01" not in stale, quality.get("aq-menteng-01")


def test_without_a_key_the_page_asks_for_one(open_dashboard: OpenDashboard, platform: RunningPlatform) -> None:
    d = open_dashboard(key=None, lang="en")
    d.page.goto(f"{platform.base_url}/")
    d.page.wait_for_selector("#banner:not([hidden])", timeout=30_000)
    assert "livinglab up --public-read" in d.page.text_content("#banner")
    assert d.page.is_visible("#key-input")
    d.page.fill("#key-input", platform.admin_key)
    d.page.click("#key-form button[type=submit]")
    d.page.wait_for_selector("#map g.sensor.air[data-ispu]", timeout=30_000)
    wait_for_stream(d)
    assert d.page.is_hidden("#banner")
    assert d.evaluate("() => localStorage.getItem('livinglab.apiKey')") == platform.admin_key


def test_a_lorawan_sensor_shows_its_dev_eui_field_map_and_missed_frames(
    open_dashboard: OpenDashboard, platform: RunningPlatform, artifacts_dir: Path
) -> None:
    sensor_id, dev_eui = "aq-browser-lora-01", "70b3d57ed0061a2b"
    field_map = {"temperature": "temp", "no2_ppb": {"quantity": "no2", "unit": "ppb"}}
    spec = {"sensor_id": sensor_id, "city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.199}
    platform.post("/v1/sensors", {**spec, "lon": 106.84, "dev_eui": dev_eui.upper(), "field_map": field_map})
    now = int(time.time())
    # Uplinks 10 and 13 of the device, as ChirpStack publishes them: 11 and 12 never arrived.
    for fcnt, ago in ((10, 120), (13, 60)):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.5+00:00", time.gmtime(now - ago))
        uplink = chirpstack_uplink(dev_eui, {"temperature": 27.5, "battery": 3.6}, fcnt=fcnt, time=stamp)
        platform.publish(chirpstack_topic(dev_eui), orjson.loads(uplink))

    def counted() -> tuple[bool, Any]:
        rows = [q for q in platform.items("/v1/quality/sensors", city="jakarta") if q["sensor_id"] == sensor_id]
        return bool(rows) and rows[0]["frames_missed_24h"] == 2, rows

    poll(counted, timeout_s=30)
    d = open_dashboard(lang="en")
    d.open(hash_=f"#sensor={sensor_id}&quantity=temp&range=24h")
    d.page.wait_for_selector('#sensor-facts dd[data-fact="frames_missed"][data-value="2"]', timeout=30_000)
    assert d.page.text_content('#sensor-facts dd[data-fact="dev_eui"]') == dev_eui
    shown = d.page.text_content('#sensor-facts dd[data-fact="field_map"]') or ""
    assert "temperature →" in shown
    assert "(ppb)" in shown
    assert d.page.get_attribute('#sensor-facts dd[data-fact="ignored_members"]', "data-value") == "2"
    # A sensor without a DevEUI shows no LoRaWAN facts.
    other = next(s["sensor_id"] for s in platform.items("/v1/sensors", city="jakarta") if not s.get("dev_eui"))
    d.page.select_option("#sensor-select", other)
    d.page.wait_for_selector("#lorawan-facts", state="hidden")
    d.page.screenshot(path=artifacts_dir / "dashboard-lorawan-sensor.png", full_page=True)
    assert d.console_errors == []


def _alarm_of(platform: RunningPlatform, rule_id: str) -> dict[str, Any]:
    def check() -> tuple[bool, Any]:
        items = platform.get("/v1/alarms", rule_id=rule_id)["items"]
        return bool(items), items

    alarms: list[dict[str, Any]] = poll(check, timeout_s=60)
    return alarms[0]


def _silence_rule(platform: RunningPlatform, rule_id: str, sensor_id: str, severity: str) -> dict[str, Any]:
    # Every sensor has been silent for more than -1 s: the evaluator raises it at its next clock tick.
    body = {"rule_id": rule_id, "name": f"test {rule_id}", "metric": "silence_s", "op": ">", "threshold": -1,
            "severity": severity, "sensor_id": sensor_id}  # fmt: skip
    platform.post("/v1/alarm-rules", body)
    return _alarm_of(platform, rule_id)


def test_alarms_panel_shows_open_alarms_live_and_acknowledges_with_a_note(
    open_dashboard: OpenDashboard, platform: RunningPlatform, artifacts_dir: Path
) -> None:
    d = open_dashboard(lang="id")
    d.open()
    wait_for_stream(d)
    city_sensors = d.evaluate("() => [...document.querySelectorAll('#map g.sensor.air')].map(e => e.dataset.sensorId)")
    first, second = city_sensors[:2]
    alarm = _silence_rule(platform, "browser-critical", first, "critical")
    # Raised after the page loaded: it arrives over the stream (the page reloads everything only once a minute).
    item = f"#alarm-list li.alarm[data-alarm-id='{alarm['alarm_id']}']"
    d.page.wait_for_selector(item, timeout=20_000)
    d.page.wait_for_selector(f"#map g.sensor[data-sensor-id='{first}'][data-alarm=critical] .alarm-ring")
    assert d.page.text_content(f"{item} .severity") == "Kritis"
    assert "Tanggapi" in d.page.text_content(f"{item} button[type=submit]")

    d.page.fill(f"{item} input", "tim sudah dikirim")
    d.page.click(f"{item} button[type=submit]")
    d.page.wait_for_selector(f"{item}[data-state=acknowledged]", timeout=20_000)
    served = platform.get(f"/v1/alarms/{alarm['alarm_id']}")
    assert (served["state"], served["note"]) == ("acknowledged", "tim sudah dikirim")

    # Active alarms come first: a newer, milder one still goes above the acknowledged one.
    later = _silence_rule(platform, "browser-info", second, "info")
    d.page.wait_for_selector(f"#alarm-list li.alarm[data-alarm-id='{later['alarm_id']}']", timeout=20_000)
    states = d.evaluate("() => [...document.querySelectorAll('#alarm-list li.alarm')].map(e => e.dataset.state)")
    assert states == sorted(states, key=lambda s: s != "active")
    d.page.click("[data-lang=en]")
    assert d.page.text_content(f"{item} .severity") == "Critical"
    d.page.screenshot(path=artifacts_dir / "dashboard-alarms.png", full_page=True)
    assert d.console_errors == []

    # A read key sees the alarms but may not acknowledge: the panel says so.
    read_key = platform.post("/v1/keys", {"scope": "read", "name": "browser read"})["key"]
    reader = open_dashboard(key=read_key, lang="en")
    reader.open()
    entry = f"#alarm-list li.alarm[data-alarm-id='{later['alarm_id']}']"
    reader.page.wait_for_selector(entry)
    reader.page.click(f"{entry} button[type=submit]")
    reader.page.wait_for_selector("#alarms-summary .panel-error")
    assert "sensors:write" in reader.page.text_content("#alarms-summary")
    assert reader.page.query_selector_all("#alarm-list .ack-form") == []
    assert platform.get(f"/v1/alarms/{later['alarm_id']}")["state"] == "active"
