"""The ingester's view of the sensor registry: an in-memory table kept fresh three ways.

1. LISTEN `livinglab_registry`: the registry functions NOTIFY on every change, and the table is reloaded at once.
2. A full reload every `refresh_s`, in case a notification was missed (a dropped connection).
3. A message from an id the table does not know triggers a lookup of that id (at most every `miss_interval_s` per
   id), so a sensor created a moment ago is accepted even before its notification arrives.

LoRaWAN uplinks name their device by DevEUI: a second dictionary, DevEUI (lower-case) -> entry, built with the
table, keeps that lookup one dictionary probe per message; an unknown DevEUI is looked up like an unknown id.

Readers never lock: the tables are replaced, never changed in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import psycopg

from livinglab.resilience import DatabasePolicy
from livinglab.storage import CHANNEL_REGISTRY, connect, listen_until_stopped
from livinglab.storage.registry import REGISTRY_COLUMNS, RegistryEntry, load_registry, registry_entry

log = logging.getLogger(__name__)

_LOOKUP = f"SELECT {REGISTRY_COLUMNS} FROM sensors WHERE sensor_id = ANY(%s)"
_LOOKUP_DEV_EUI = f"SELECT {REGISTRY_COLUMNS} FROM sensors WHERE dev_eui = ANY(%s)"
#: Remembered misses at most; a flood of made-up ids then only costs lookups, not memory.
_MAX_MISSES = 100_000


class SensorDirectory:
    """sensor_id -> RegistryEntry, refreshed by notification, by period and on a miss."""

    def __init__(
        self,
        conninfo: str,
        *,
        refresh_s: float = 30.0,
        miss_interval_s: float = 0.25,
        application_name: str = "livinglab-ingest-registry",
        lookup_connection: Callable[[], psycopg.Connection[Any]] | None = None,  # default: one of its own
        policy: DatabasePolicy | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.policy = policy or DatabasePolicy()
        self.refresh_s = refresh_s
        self.miss_interval_s = miss_interval_s
        self.application_name = application_name
        self._lookup_connection = lookup_connection or self._own_connection
        self._lookup_conn: psycopg.Connection[Any] | None = None
        self._entries: dict[str, RegistryEntry] = {}
        self._by_dev_eui: dict[str, RegistryEntry] = {}
        self._misses: dict[str, float] = {}
        self._loaded = threading.Event()
        self.listening = False
        self.last_error: str | None = None

    def _own_connection(self) -> psycopg.Connection[Any]:
        if self._lookup_conn is None or self._lookup_conn.closed:
            self._lookup_conn = connect(
                self.conninfo, policy=self.policy, application_name=self.application_name, autocommit=True
            )
        return self._lookup_conn

    def close(self) -> None:
        """Close the lookup connection (the listener closes its own when `run` returns)."""
        if self._lookup_conn is not None:
            self._lookup_conn.close()
            self._lookup_conn = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sensor_id: str) -> RegistryEntry | None:
        return self._entries.get(sensor_id)

    def get_by_dev_eui(self, dev_eui: str) -> RegistryEntry | None:
        """The sensor with this DevEUI (lower-case), if one is registered."""
        return self._by_dev_eui.get(dev_eui)

    def _replace(self, entries: dict[str, RegistryEntry]) -> None:
        self._by_dev_eui = {e.dev_eui: e for e in entries.values() if e.dev_eui is not None}
        self._entries = entries

    def wait_loaded(self, timeout_s: float) -> bool:
        return self._loaded.wait(timeout_s)

    def load(self, conn: psycopg.Connection[Any]) -> None:
        """Replace the table with the registry's current content."""
        self._replace(load_registry(conn))
        self._misses.clear()
        self._loaded.set()

    def resolve_missing(self, sensor_ids: Collection[str]) -> None:
        """Look up ids the table lacks (through the batch writer's connection).

        Raises psycopg errors: a message must not be rejected as `unknown_sensor` because the database was away.
        """
        self._resolve(_LOOKUP, sensor_ids, "")

    def resolve_missing_dev_euis(self, dev_euis: Collection[str]) -> None:
        """Look up DevEUIs (lower-case) the table lacks, as `resolve_missing` does ids."""
        self._resolve(_LOOKUP_DEV_EUI, dev_euis, "eui:")

    def _resolve(self, query: str, keys: Collection[str], kind: str) -> None:
        now = time.monotonic()
        due = [k for k in keys if now - self._misses.get(kind + k, -1e18) >= self.miss_interval_s]
        if not due:
            return
        rows = self._lookup_connection().execute(query, (due,)).fetchall()
        if len(self._misses) > _MAX_MISSES:
            self._misses.clear()
        for key in due:
            self._misses[kind + key] = now
        if rows:
            entries = dict(self._entries)
            for row in rows:
                entry = registry_entry(row)
                entries[entry.sensor_id] = entry
                self._misses.pop(entry.sensor_id, None)
                if entry.dev_eui is not None:
                    self._misses.pop("eui:" + entry.dev_eui, None)
            self._replace(entries)

    def run(self, stop: threading.Event) -> None:
        """LISTEN and reload until `stop` is set; reconnects with backoff when the database goes away."""

        def serve(conn: psycopg.Connection[Any]) -> None:
            self.load(conn)
            self.listening, self.last_error = True, None
            try:
                self._listen(conn, stop)
            finally:
                self.listening = False

        def failed(error: str) -> None:
            self.last_error = error

        listen_until_stopped(
            self.conninfo,
            policy=self.policy,
            channel=CHANNEL_REGISTRY,
            application_name=self.application_name,
            stop=stop,
            serve=serve,
            failed=failed,
            what="registry listener",
        )

    def _listen(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        loaded_at = time.monotonic()
        while not stop.is_set():
            changed = False
            for _ in conn.notifies(timeout=0.5):
                changed = True
                break
            if changed or time.monotonic() - loaded_at >= self.refresh_s:
                # More notifications may be queued; one reload covers them all.
                for _ in conn.notifies(timeout=0.0):
                    pass
                self.load(conn)
                loaded_at = time.monotonic()
            else:
                # A silent link never fails a wait for notifications; a query notices it (the policy's deadline).
                conn.execute("SELECT 1")
