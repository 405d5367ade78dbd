"""The platform under soak, started by the soak itself: its own Mosquitto, and an ingester and a processor as
separate `python -m livinglab ingest|process` processes on a scratch database. Everything listens on free loopback
ports; on exit each process is stopped by its own pid.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from livinglab.embedded import LOOPBACK, MosquittoBroker, free_port
from livinglab.launch import RoleProcess, platform_settings, started

INGESTER_ID = "soak-ingest"
PROCESSOR_ID = "soak-process"


class RoleExitedError(RuntimeError):
    """A role process ended while the soak needed it."""


@dataclass(frozen=True, slots=True)
class Platform:
    """The running platform: the broker, the two role processes and the ingester's /health URL."""

    broker: MosquittoBroker
    ingester: RoleProcess
    processor: RoleProcess
    health_url: str

    @property
    def roles(self) -> tuple[RoleProcess, RoleProcess]:
        return (self.ingester, self.processor)

    def pids(self) -> dict[str, int]:
        """Process ids by name, for the memory table."""
        named = {"ingester": self.ingester.pid, "processor": self.processor.pid, "broker": self.broker.pid}
        return {name: pid for name, pid in named.items() if pid is not None}

    def check_running(self) -> None:
        """Raise `RoleExitedError` (with the end of its log) if a role process has ended."""
        for role in self.roles:
            if not role.running:
                code = role.process.returncode if role.process is not None else None
                raise RoleExitedError(f"{role.name} exited (code {code}):\n{role.log_tail()}")
        if not self.broker.running:
            raise RoleExitedError("mosquitto exited")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # a loopback URL built here
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _processor_ready(processor: RoleProcess) -> bool:
    return processor.log_path.exists() and f"processor {PROCESSOR_ID} ready" in processor.log_path.read_text(
        errors="replace"
    )


def wait_ready(platform: Platform, timeout_s: float = 180.0) -> None:
    """Wait until the ingester reports healthy (subscribed, database reachable) and the processor is listening."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        platform.check_running()
        if _healthy(platform.health_url) and _processor_ready(platform.processor):
            return
        time.sleep(0.2)
    logs = "\n".join(f"--- {role.name}\n{role.log_tail()}" for role in platform.roles)
    raise TimeoutError(f"the roles were not ready within {timeout_s:.0f} s\n{logs}")


@contextmanager
def running_platform(database_url: str, log_dir: Path, prefix: str) -> Iterator[Platform]:
    """Start Mosquitto, the ingester and the processor; wait until they are ready; stop them all on exit."""
    broker = MosquittoBroker(log_dir / "mosquitto")
    broker.start()
    try:
        health_port = free_port()
        settings = platform_settings(database_url, broker, prefix)
        ingester = RoleProcess(
            "ingest",
            {**settings, "LIVINGLAB_CLIENT_ID": INGESTER_ID, "LIVINGLAB_HEALTH_PORT": str(health_port)},
            log_dir,
            name="ingester",
        )
        processor = RoleProcess("process", {**settings, "LIVINGLAB_WORKER_ID": PROCESSOR_ID}, log_dir, name="processor")
        with started(ingester, processor):
            platform = Platform(broker, ingester, processor, f"http://{LOOPBACK}:{health_port}/health")
            wait_ready(platform)
            yield platform
    finally:
        broker.stop()
