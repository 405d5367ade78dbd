"""A PostgreSQL server of the test's own, which the test may stop and start again (database outages).

`initdb` in a temporary directory and `pg_ctl` on a free loopback port, never the shared server. The binaries come
from `LIVINGLAB_TEST_PG_BINDIR`, else the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`. PostgreSQL
refuses to run as root, so as root the server runs as user `postgres`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from livinglab.embedded import LOOPBACK, free_port


def find_bindir() -> Path | None:
    """A directory holding `initdb`, `pg_ctl` and `postgres`, or None."""
    configured = os.environ.get("LIVINGLAB_TEST_PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


class OwnPostgres:
    """A throwaway cluster: `start()` once (initdb), then `stop()` / `resume()` at will, `destroy()` at the end.

    `durable=False` (tests) turns fsync off; `settings` are added to postgresql.conf.
    """

    def __init__(
        self, bindir: Path, *, port: int | None = None, durable: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        self.bindir = bindir
        self.port = port or free_port()
        self.durable = durable
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="livinglab-pg-"))
        self.pgdata = self.root / "data"
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """Superuser URL of the `postgres` database."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        """initdb and start; returns the URL."""
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "40",
        }
        if not self.durable:  # a test cluster: durability buys nothing and costs the shared disk
            settings |= {"fsync": "off", "full_page_writes": "off"}
        settings |= self.settings
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        self.resume()
        return self.url

    def resume(self) -> None:
        """Start the server again on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Shut down: `fast` cuts open connections and checkpoints; `immediate` quits at once, as a crash does (the
        next start recovers from the WAL). The data stays."""
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
