"""Fixtures of the browser tests: a headless Chromium driven by Playwright, and a running platform fed by the
simulated city.

Chromium is Debian's (`apt install chromium`; `LIVINGLAB_CHROMIUM` overrides `/usr/bin/chromium`); Playwright
never downloads a browser of its own. Without Chromium or Playwright the tests are skipped, saying why.
Screenshots and the platform's log go to `LIVINGLAB_ARTIFACTS_DIR` (default: `artifacts/browser`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livinglab.embedded import MosquittoBroker
from livinglab.launch import create_database, drop_database, unique_name
from tests.browser.platform import REPO, Dashboard, RunningPlatform, poll, running_platform

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("LIVINGLAB_ARTIFACTS_DIR", REPO / "artifacts" / "browser"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("LIVINGLAB_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"no Chromium at {path} (apt install chromium, or set LIVINGLAB_CHROMIUM)")
    return path


# Package scope, not session: Playwright's sync API keeps an event loop running in the main thread while it is open,
# so any later test calling asyncio.run() would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is in the test extra")
    # Playwright gives each launch a fresh temporary profile (its own --user-data-dir).
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def platform(
    pg_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[RunningPlatform]:
    """`livinglab up --simulate` with its own database and broker, once the simulated city has indices to show."""
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    name = unique_name("llt_browser")
    database_url = create_database(pg_server_url, name, template=template_database)
    broker = MosquittoBroker(tmp_path_factory.mktemp("browser-mosquitto"))
    broker.start()
    try:
        with running_platform(
            database_url, broker, tmp_path_factory.mktemp("browser-data"), artifacts_dir / "platform.log"
        ) as platform:
            _wait_for_city(platform, timeout_s=float(os.environ.get("LIVINGLAB_BROWSER_DATA_TIMEOUT_S", "420")))
            yield platform
    finally:
        broker.stop()
        drop_database(pg_server_url, name)


def _wait_for_city(platform: RunningPlatform, timeout_s: float) -> None:
    """Until every air station has an ISPU and every traffic counter a level of service."""

    def ready() -> tuple[bool, Any]:
        sensors = platform.items("/v1/sensors")
        air = {s["sensor_id"] for s in sensors if s["kind"] == "air"}
        traffic = {s["sensor_id"] for s in sensors if s["kind"] == "traffic"}
        ispu = {i["sensor_id"] for i in platform.items("/v1/air/ispu") if i["ispu"] is not None}
        los = {i["sensor_id"] for i in platform.items("/v1/traffic/segments") if i["los"]}
        missing = (air - ispu) | (traffic - los)
        return bool(sensors) and not missing, {"missing": sorted(missing)}

    poll(ready, timeout_s=timeout_s, interval_s=3.0)


@pytest.fixture
def open_dashboard(browser: Any, platform: RunningPlatform, artifacts_dir: Path) -> Iterator[Callable[..., Dashboard]]:
    """Make a fresh browser context (own storage) holding the dashboard page; `key=None` stores no API key."""
    contexts: list[Any] = []

    def make(*, key: str | None = "admin", lang: str | None = None, **context_options: Any) -> Dashboard:
        context = browser.new_context(**{"viewport": {"width": 1440, "height": 1000}, **context_options})
        contexts.append(context)
        stored = {"livinglab.apiKey": platform.admin_key if key == "admin" else key, "livinglab.lang": lang}
        script = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in stored.items() if v)
        context.add_init_script(
            f"if (!sessionStorage.getItem('seeded')) {{ {script} sessionStorage.setItem('seeded', '1'); }}"
        )
        page = context.new_page()
        dashboard = Dashboard(page, platform.base_url)
        page.on("console", lambda m: dashboard.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: dashboard.console_errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: dashboard.requests.append(r.url))
        return dashboard

    yield make
    for context in contexts:
        context.close()
