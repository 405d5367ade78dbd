"""A throwaway PostgreSQL server with TimescaleDB preloaded, for tests and benchmarks that need the extension.

The shared test server does not preload TimescaleDB (and must not: CREATE EXTENSION on a server that does not preload
it ends the session), so tests marked `timescaledb` start their own: `initdb` in a temporary directory, on a free
loopback port, with `shared_preload_libraries=timescaledb` and telemetry off. The PostgreSQL binaries are looked up
in `LIVINGLAB_TEST_PG_BINDIR`, then in the Debian layouts under /usr/lib and /usr/local/lib; the first whose
installation has the extension wins. PostgreSQL refuses to run as root, so as root the server runs as `postgres`.
The server runs as a child of the test process and ends with it, even when the test run is killed.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import psycopg

from livinglab.embedded import LOOPBACK, free_port

_PR_SET_PDEATHSIG = 1
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


def _end_with_parent() -> None:
    """In the server's process before exec: ask the kernel for SIGINT when the parent (the test run) dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


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
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Superuser URL of the `postgres` database."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]], user=self._user, check=True, capture_output=True, timeout=120
        )

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
            # A scheduler per database plus a worker per running job: the defaults (8 worker processes) run out when
            # several test databases live on one server, and policy jobs then wait for a free worker.
            "max_worker_processes": "32",
            "timescaledb.max_background_workers": "24",
            **self.extra_settings,
        }
        if not self.durable:
            # A throwaway cluster for tests: durability buys nothing here and costs the shared disk.
            settings |= {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")
        # The server is our child, not a daemon, and it gets SIGINT (fast shutdown) if this process dies: a test run
        # that is killed leaves no server behind.
        self._log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.pgdata)],
            user=self._user,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_end_with_parent,  # runs between fork and exec: keep it a single system call
        )
        deadline = time.monotonic() + 60
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return self.url

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
