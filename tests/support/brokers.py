"""Mosquitto for tests that need to see what the broker did."""

from __future__ import annotations

from pathlib import Path

from livinglab.embedded import MosquittoBroker


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
