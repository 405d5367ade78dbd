"""The embedded runtime behind `livinglab up`: the whole platform as child processes on one machine.

With no database URL it starts an embedded PostgreSQL in the data directory; with no MQTT URL an embedded broker on
loopback. It migrates (and applies the storage policies), creates an admin key for this run, starts an ingester, a
processor, the API, the retention job and the deliverer of notifications (and, with `--simulate`, a simulated city)
as child processes in their own sessions, restarts a child that dies, and on Ctrl-C stops them in order: producers
first, then consumers, then the broker and the database.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from livinglab.alarms.rule_files import default_rules
from livinglab.alarms.store import import_rules
from livinglab.embedded import Broker, EmbeddedPostgres, make_broker, port_is_free, port_or_free, wait_for_port
from livinglab.errors import ConfigurationError
from livinglab.settings import CoreSettings
from livinglab.storage import connect, migrate
from livinglab.storage.keys import Scope, create_key, revoke_keys_named
from livinglab.storage.policies import StoragePolicies, apply_policies

log = logging.getLogger(__name__)

LOCAL_ADMIN_KEY_NAME = "livinglab up (local admin)"
_DATABASE = "livinglab"


def resolve_database_url(settings: CoreSettings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured database URL, or the embedded server's (started or attached to) and its handle."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
    admin_url = embedded.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {_DATABASE}")
    return _with_database(admin_url, _DATABASE), embedded


def _with_database(url: str, database: str) -> str:
    # pgserver answers postgresql://postgres:@/postgres?host=/socket/dir
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


@dataclass
class Child:
    role: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv, env=self.env, start_new_session=True
        )
        log.info("started %s (pid %d)", self.role, self.process.pid)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.role, timeout_s)
            self.process.kill()
            self.process.wait()


class Platform:
    def __init__(
        self,
        settings: CoreSettings,
        *,
        simulate: bool = False,
        scenario: str = "demo",
        api_port: int = 8000,
        api_port_fixed: bool = False,
        public_read: bool = False,
    ) -> None:
        self.settings = settings
        self.simulate = simulate
        self.scenario = scenario
        self.api_port = api_port
        self.api_port_fixed = api_port_fixed
        self.public_read = public_read
        self._stop = threading.Event()
        self._children: list[Child] = []
        self._embedded_db: EmbeddedPostgres | None = None
        self._broker: Broker | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self._shutdown()

    def _run(self) -> int:
        started = time.monotonic()
        if self.api_port_fixed and not port_is_free(self.api_port):
            raise ConfigurationError(f"the API port {self.api_port} is taken (--port, LIVINGLAB_API_PORT)")
        database_url, self._embedded_db = resolve_database_url(self.settings)
        if self._embedded_db:
            log.info("embedded PostgreSQL in %s", self._embedded_db.pgdata)
        mqtt_url = self.settings.mqtt_url
        protocol: dict[str, str] = {}  # an external broker: the ingester's own setting (default: probe it)
        if not mqtt_url:
            self._broker = make_broker(self.settings.data_dir, port=port_or_free(1883))
            self._broker.start()
            mqtt_url = self._broker.url
            protocol["LIVINGLAB_MQTT_PROTOCOL"] = "5" if self._broker.speaks_mqtt5 else "3.1.1"
            log.info("embedded broker at %s", mqtt_url)
        applied = migrate(
            database_url, timescaledb=self.settings.timescaledb, chunk_interval=self.settings.chunk_interval
        )
        if applied:
            log.info("applied migrations %s", applied)
        with connect(database_url) as conn:
            apply_policies(conn, StoragePolicies.from_settings(self.settings))
            revoke_keys_named(conn, LOCAL_ADMIN_KEY_NAME)
            admin_key = create_key(conn, Scope.ADMIN, name=LOCAL_ADMIN_KEY_NAME)
            if self.simulate:
                self._register_scenario(conn)
            conn.commit()

        api_port = self.api_port if self.api_port_fixed else port_or_free(self.api_port)
        env = {
            **os.environ,
            "LIVINGLAB_DATABASE_URL": database_url,
            "LIVINGLAB_MQTT_URL": mqtt_url,
            **protocol,
            "LIVINGLAB_API_PORT": str(api_port),
            "LIVINGLAB_DATA_DIR": str(self.settings.data_dir),
        }
        if self.public_read:
            env["LIVINGLAB_PUBLIC_READ"] = "true"
        if self.simulate and "LIVINGLAB_DASHBOARD_DISTRICTS" not in env:
            districts = self._write_scenario_districts()
            if districts is not None:
                env["LIVINGLAB_DASHBOARD_DISTRICTS"] = str(districts)
        module = [sys.executable, "-m", "livinglab"]
        self._children = [
            Child("ingest", [*module, "ingest"], env),
            Child("process", [*module, "process"], env),
            Child("api", [*module, "api"], env),
            Child("retention", [*module, "retention"], env),
            Child("notify", [*module, "notify"], env),
        ]
        if self.simulate:
            # Backfill the last day first, so hourly indices (ISPU, AQI, LOS) exist at once, then go on in real time.
            simulate = ["simulate", "--scenario", self.scenario, "--mode", "backfill", "--days", "1", "--follow"]
            self._children.append(Child("simulate", [*module, *simulate, "--no-progress"], env))
        for child in self._children:
            child.start()
        api = self._children[2]
        wait_for_port(api_port, timeout_s=60, process=api.process)
        print(f"API: http://127.0.0.1:{api_port}", flush=True)
        print(f"admin key: {admin_key}", flush=True)
        log.info(
            "platform up in %.1f s; dashboard at http://127.0.0.1:%d/ , API docs at /docs; Ctrl-C stops",
            time.monotonic() - started,
            api_port,
        )
        return self._supervise()

    def _register_scenario(self, conn: psycopg.Connection[object]) -> None:
        from livinglab.storage.registry import upsert_sensors
        from simulators import load_scenario

        scenario = load_scenario(self.scenario)
        upsert_sensors(conn, scenario.specs)
        log.info("registered %d sensors of scenario %r", len(scenario.sensors), self.scenario)
        # The demo city shows alarms: the default rule set, without overwriting rules an operator changed.
        added = import_rules(conn, default_rules(), replace=False)
        log.info("added %d default alarm rules", len(added))

    def _write_scenario_districts(self) -> Path | None:
        """The scenario's district outlines as GeoJSON in the data directory, for the dashboard's map."""
        from simulators import load_scenario
        from simulators.command import districts_geojson

        document = districts_geojson(load_scenario(self.scenario))
        if not document["features"]:
            return None
        path = self.settings.data_dir / "dashboard-districts.geojson"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    def _supervise(self) -> int:
        while not self._stop.wait(0.5):
            for child in self._children:
                assert child.process is not None
                code = child.process.poll()
                if code is None:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                if len(child.restarts) > 5:
                    log.error("%s keeps exiting (last code %s); stopping the platform", child.role, code)
                    return 1
                log.warning("%s exited with code %s; restarting it", child.role, code)
                child.start()
        return 0

    def _shutdown(self) -> None:
        log.info("stopping")
        # Producers first so consumers can drain what was sent.
        for role in ("simulate", "ingest", "process", "api", "retention", "notify"):
            for child in self._children:
                if child.role == role:
                    child.stop()
        if self._broker is not None:
            self._broker.stop()
        if self._embedded_db is not None:
            self._embedded_db.stop()
        log.info("stopped")
