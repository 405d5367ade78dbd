"""The platform of an ingest benchmark run (PostgreSQL, Mosquitto, ingester processes) and what a run reads off it:
the ingester's `/metrics`, processes' CPU time and peak memory, the readings stored and when they were committed.
Shared by `benchmarks.ingest` and its LoRaWAN figure (`benchmarks.ingest._lorawan`)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from ingest.metrics import stat_cpu_seconds
from livinglab.embedded import MosquittoBroker, free_port
from livinglab.sensors import SensorSpec
from livinglab.storage.registry import upsert_sensors

_RESET = "TRUNCATE readings, dirty_windows, ingest_counters, ingest_latency, rejected"


def metrics_text(port: int) -> str:
    """The ingester's `/metrics` page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric(port: int, name: str) -> float:
    for line in metrics_text(port).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.01) -> float:
    """Poll until true; returns the wall-clock time it first was."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s} s")


#: How often a run looks whether the ingester has stored everything. Each look is a `/metrics` scrape, which costs
#: the ingester about 1.7 ms of CPU time: looking every 10 ms took a tenth of a core from the run being measured.
POLL_S = 0.1


def stored(bench: Bench, port: int, readings: int, what: str) -> float:
    """Wait until the ingester at `port` has stored `readings`; returns when the last of them was committed
    (PostgreSQL's commit timestamp; the acknowledgements leave right after), which does not depend on how often
    the run looks."""
    wait_until(lambda: metric(port, "livinglab_ingest_readings_accepted_total") >= readings, 300, what, POLL_S)
    return bench.last_commit()


def cpu_s(pid: int) -> float:
    """User and system CPU seconds a process (all its threads) has used so far."""
    seconds = stat_cpu_seconds(f"/proc/{pid}/stat")
    if seconds is None:
        raise ProcessLookupError(f"no process {pid}")
    return seconds


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Bench:
    """The platform of one benchmark run."""

    def __init__(self, work: Path, database_url: str, broker: MosquittoBroker) -> None:
        self.work = work
        self.database_url = database_url
        self.broker = broker
        self.base_ts = math.floor(time.time()) - 6 * 86400  # inside the 7-day window for the whole run
        self.runs = 0

    def reset(self, sensors: list[str]) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(_RESET)
            specs = [
                SensorSpec(sensor_id=s, city="bench", district="bench", kind="air", lat=0.0, lon=0.0) for s in sensors
            ]
            upsert_sensors(conn, specs)
            conn.execute("CHECKPOINT")

    def last_commit(self) -> float:
        """Unix time of the last commit that stored readings (the server tracks commit timestamps)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8 FROM readings"
            ).fetchone()
        if row is None or row[0] is None:
            raise RuntimeError("no commit timestamp: no readings, or track_commit_timestamp is off")
        return float(row[0])

    def count(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def ingester(
        self, paho_hooks: str | None = None, *, client_id: str | None = None, keep_session: bool = False
    ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
        self.runs += 1
        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin",
            "LIVINGLAB_DATABASE_URL": self.database_url,
            "LIVINGLAB_MQTT_URL": self.broker.url,
            "LIVINGLAB_CLIENT_ID": client_id or f"bench-ingest-{self.runs}",
            "LIVINGLAB_HEALTH_PORT": str(port),
            "LIVINGLAB_LOG_LEVEL": "WARNING",
        }
        if paho_hooks is not None:
            env["LIVINGLAB_PAHO_HOOKS"] = paho_hooks
        log = (self.work / f"ingest-{self.runs}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "livinglab", "ingest"], env=env, stdout=log, stderr=log)
        try:
            wait_until(lambda: healthy(port), 60, "ingester health", interval_s=0.1)
            yield process, port
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
            if not keep_session:
                self._end_session(env["LIVINGLAB_CLIENT_ID"])

    def _end_session(self, client_id: str) -> None:
        """Discard an ingester's persistent session, or the broker would queue every later run's messages for it."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.connect(self.broker.host, self.broker.port, clean_start=True)  # no session expiry: gone at disconnect
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()

    @contextmanager
    def consumer(self, mode: str, count: int) -> Iterator[subprocess.Popen[str]]:
        argv = [sys.executable, "-m", "benchmarks.ingest._consumers", mode, "--port", str(self.broker.port)]
        argv += ["--count", str(count), "--database-url", self.database_url]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{mode} consumer did not subscribe")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
