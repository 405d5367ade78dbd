"""Platform roles as separate OS processes (`python -m livinglab <role>`), as a multi-process deployment runs them.

Each process gets a clean environment (only the settings given, plus PATH, HOME and NUMBA_* variables), writes its
log to a file, and is signalled by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from livinglab.embedded import Broker, _ChildProcess


class RoleProcess(_ChildProcess):
    """One `livinglab <role>` process with the given LIVINGLAB_* settings (`stop()`: SIGTERM, `kill()`: SIGKILL)."""

    def __init__(self, role: str, settings: Mapping[str, str], log_dir: Path, *, name: str | None = None) -> None:
        super().__init__()
        self.role = role
        self.name = name or role
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback for a missing HOME
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


class _Process(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


Process = TypeVar("Process", bound=_Process)


@contextlib.contextmanager
def started(*processes: Process) -> Iterator[tuple[Process, ...]]:
    """Start the processes (roles, brokers); stop (SIGTERM) every one still running on exit."""
    for process in processes:
        process.start()
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def platform_settings(database_url: str, broker: Broker | None, topic_prefix: str, **extra: str) -> dict[str, str]:
    """The settings every role of one platform shares (no MQTT URL without a broker: processors need none)."""
    settings = {
        "LIVINGLAB_DATABASE_URL": database_url,
        "LIVINGLAB_TOPIC_PREFIX": topic_prefix,
        "LIVINGLAB_LOG_LEVEL": "INFO",
        **extra,
    }
    if broker is not None:
        settings["LIVINGLAB_MQTT_URL"] = broker.url
    return settings
