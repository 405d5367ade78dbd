"""Mosquitto for tests that need to see what the broker did, or that run the shipped configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from livinglab.embedded import MosquittoBroker, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PLUGIN_PATHS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so")


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


class ShippedBroker(MosquittoBroker):
    """Mosquitto run from deploy/mosquitto/mosquitto.conf: the device listener on `port`, the services listener on
    `services_port`, both on loopback; files in the state directory, the plugin from this machine."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.services_port = free_port()
        self.dynsec = self.state_dir / "dynamic-security.json"
        self.services_passwd = self.state_dir / "services.passwd"

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        plugin = next((p for p in PLUGIN_PATHS if os.path.exists(p)), None)
        if plugin is None:
            pytest.skip("Mosquitto's dynamic security plugin is not installed")
        local = {
            "listener 1883": f"listener {self.port} {self.host}",
            "listener 1884": f"listener {self.services_port} {self.host}",
            "plugin": f"plugin {plugin}",
            "plugin_opt_config_file": f"plugin_opt_config_file {self.dynsec}",
            "password_file": f"password_file {self.services_passwd}",
            "acl_file": f"acl_file {DEPLOY / 'services.acl'}",
            "persistence_location": f"persistence_location {self.state_dir}/",
        }
        lines = []
        for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
            words = line.split()
            key = " ".join(words[:2]) if words[:1] == ["listener"] else (words[0] if words else "")
            lines.append(local.get(key, line) if not line.startswith("#") else line)
        if os.geteuid() == 0:
            lines.append("user root")  # as MosquittoBroker does: the state directory is root's
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path
