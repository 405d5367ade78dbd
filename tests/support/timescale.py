"""A throwaway PostgreSQL server with TimescaleDB preloaded, for tests and benchmarks that need the extension.

The shared test server does not preload TimescaleDB (and must not: CREATE EXTENSION on a server that does not preload
it ends the session), so tests marked `timescaledb` start their own: `initdb` in a temporary directory, on a free
loopback port, with `shared_preload_libraries=timescaledb` and telemetry off. The PostgreSQL binaries are looked up
in `LIVINGLAB_TEST_PG_BINDIR`, then in the Debian layouts under /usr/lib and /usr/local/lib; the first whose
installation has the extension wins. PostgreSQL refuses to run as root, so as root the server runs as `postgres`.
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

_CANDIDATES = ("/usr/lib/postgresql/*/bin", "/usr/local/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


def _pg_config(bindir: Path, flag: str) -> Path | None:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return None
    try:
        out = subprocess.run([str(pg_config), flag], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.strip())


def has_timescaledb(bindir: Path) -> bool:
    """Whether the PostgreSQL installation of `bindir` has the TimescaleDB extension and library."""
    sharedir = _pg_config(bindir, "--sharedir")
    pkglibdir = _pg_config(bindir, "--pkglibdir")
    return bool(
        sharedir
        and pkglibdir
        and (sharedir / "extension" / "timescaledb.control").exists()
        and (pkglibdir / "timescaledb.so").exists()
        and (bindir / "initdb").exists()
    )


def find_timescaledb_bindir() -> tuple[Path | None, str]:
    """A PostgreSQL bin directory whose installation has TimescaleDB, or None and why not."""
    configured = os.environ.get("LIVINGLAB_TEST_PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    for pattern in _CANDIDATES:
        candidates += sorted((Path(p) for p in glob.glob(pattern)), reverse=True)
    looked = []
    for bindir in candidates:
        if has_timescaledb(bindir):
            return bindir, ""
        looked.append(str(bindir))
    where = ", ".join(looked) or "no PostgreSQL installation found"
    return None, f"no PostgreSQL installation with the timescaledb extension (looked in: {where})"


class TimescalePostgres:
    """`initdb` + `postgres` with TimescaleDB preloaded, in a temporary directory, on a free loopback port."""

    def __init__(
        self,
        bindir: Path,
        *,
        port: int | None = None,
        durable: bool = False,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = bindir
        self.durable = durable
        self.port = port or free_port()
        self.extra_settings = extra_settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="livinglab-tsdb-"))
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
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "max_connections": "60",
            **self.extra_settings,
        }
        if not self.durable:
            # A throwaway cluster for tests: durability buys nothing here and costs the shared disk.
            settings |= {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self.url

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
