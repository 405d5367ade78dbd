"""Platform roles as separate OS processes (`python -m livinglab <role>`), as a multi-process deployment runs them.

Used by the scale-out tests and `benchmarks/scale.py`. Each process gets a clean environment (only the settings
given, plus PATH and HOME), writes its log to a file, and is signalled by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from livinglab.embedded import MosquittoBroker, _ChildProcess


class RoleProcess(_ChildProcess):
    """One `livinglab <role>` process with the given LIVINGLAB_* settings (`stop()`: SIGTERM, `kill()`: SIGKILL)."""

    def __init__(self, role: str, settings: Mapping[str, str], log_dir: Path, *, name: str | None = None) -> None:
        super().__init__()
        self.role = role
        self.name = name or role
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            **{k: v for k, v in os.environ.items() if k.startswith("NUMBA_")},
            **settings,
        }
        self.log_path = log_dir / f"{self.name}.log"

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "livinglab", self.role], self.log_path, env=self.env)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def started(*roles: RoleProcess) -> Iterator[tuple[RoleProcess, ...]]:
    """Start the processes; stop (SIGTERM) every one still running on exit."""
    for role in roles:
        role.start()
    try:
        yield roles
    finally:
        for role in roles:
            role.stop()


def platform_settings(
    database_url: str, broker: MosquittoBroker | None, topic_prefix: str, **extra: str
) -> dict[str, str]:
    """The settings every role of one test platform shares (no MQTT URL without a broker: processors need none)."""
    settings = {
        "LIVINGLAB_DATABASE_URL": database_url,
        "LIVINGLAB_TOPIC_PREFIX": topic_prefix,
        "LIVINGLAB_LOG_LEVEL": "INFO",
        **extra,
    }
    if broker is not None:
        settings["LIVINGLAB_MQTT_URL"] = broker.url
    return settings


class DebugLoggingBroker(MosquittoBroker):
    """A test Mosquitto that logs every packet, so a test can count what it sent to which client."""

    @property
    def debug_log(self) -> Path:
        return self.state_dir / "debug.log"

    def write_config(self) -> Path:
        path = super().write_config()
        with path.open("a") as conf:
            # A log file of its own: Mosquitto flushes it line by line, unlike its buffered stdout.
            conf.write(f"log_dest file {self.debug_log}\nlog_type debug\n")
        return path

    def publishes_sent(self, *, redelivered: bool = False) -> dict[str, int]:
        """How many PUBLISH packets the broker sent to each client id (only those with DUP set: `redelivered`)."""
        counts: dict[str, int] = {}
        for line in self.debug_log.read_text(errors="replace").splitlines():
            _, sep, rest = line.partition("Sending PUBLISH to ")
            if sep and (not redelivered or " (d1," in rest):
                client = rest.split(" ", 1)[0]
                counts[client] = counts.get(client, 0) + 1
        return counts

    def unacknowledged(self, client_id: str) -> int:
        """QoS 1 messages the broker sent to `client_id` and has no PUBACK for yet (from its log, so far)."""
        sent = acked = 0
        for line in self.debug_log.read_text(errors="replace").splitlines():
            if f"Sending PUBLISH to {client_id} " in line:
                sent += 1
            elif f"Received PUBACK from {client_id} " in line:
                acked += 1
        return sent - acked

    def has_subscribed(self, client_id: str) -> bool:
        """Whether the broker received a SUBSCRIBE from `client_id` (since it started logging)."""
        log = self.debug_log
        return log.exists() and f"Received SUBSCRIBE from {client_id}" in log.read_text(errors="replace")
