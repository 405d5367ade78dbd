"""A PostgreSQL cluster of our own, for tests and benchmarks: `initdb` in a temporary directory, then `postgres` as a
child process on a free loopback port (TCP, as clients and the fault proxy reach a production server).

The binaries come from the directory given, else the newest Debian-style installation (`/usr/lib/postgresql/*/bin`,
`/usr/local/lib/postgresql/*/bin`, `/usr/local/pgsql/bin`), else `pg_config --bindir`, else the build the `pgserver`
package ships (a dependency, so a fresh clone always has one). With `timescaledb=True` only an installation with the
extension qualifies, and the cluster preloads it. PostgreSQL refuses to run as root, so as root the server runs as
user `postgres`.

The server gets SIGINT (fast shutdown) when the thread that started it ends, so a killed test or benchmark run leaves
no server behind: start clusters from the main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg

from livinglab.embedded import LOOPBACK, free_port

_PR_SET_PDEATHSIG = 1
_INSTALLATIONS = ("/usr/lib/postgresql/*/bin", "/usr/local/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
#: `stop()` modes and the signal each sends the postmaster (see "Shutting Down the Server" in the PostgreSQL docs).
_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _pg_config(bindir: Path, flag: str) -> Path | None:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return None
    try:
        argv = [str(pg_config), flag]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.strip())


def has_timescaledb(bindir: Path) -> bool:
    """Whether the PostgreSQL installation of `bindir` has the TimescaleDB extension and its library."""
    sharedir = _pg_config(bindir, "--sharedir")
    pkglibdir = _pg_config(bindir, "--pkglibdir")
    return bool(
        sharedir
        and pkglibdir
        and (sharedir / "extension" / "timescaledb.control").exists()
        and (pkglibdir / "timescaledb.so").exists()
    )


def _pgserver_bindir() -> Path | None:
    # Found without importing pgserver: its import warns (platformdirs) and tests turn warnings into errors.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _candidates(configured: Path | None) -> list[Path]:
    candidates = [configured] if configured else []
    for pattern in _INSTALLATIONS:
        candidates += sorted((Path(p) for p in glob.glob(pattern)), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = _pg_config(Path(pg_config).parent, "--bindir")
        if found:
            candidates.append(found)
    bundled = _pgserver_bindir()
    if bundled:
        candidates.append(bundled)
    return candidates


def find_bindir(configured: Path | None = None, *, timescaledb: bool = False) -> tuple[Path | None, str]:
    """A directory with `initdb` and `postgres` (whose installation has TimescaleDB, when asked), or None and why
    not. `configured` (for example from LIVINGLAB_TEST_PG_BINDIR) is tried first."""
    looked = []
    for bindir in _candidates(configured):
        if all((bindir / tool).exists() for tool in ("initdb", "postgres")) and (
            not timescaledb or has_timescaledb(bindir)
        ):
            return bindir, ""
        looked.append(str(bindir))
    wanted = "PostgreSQL installation with the timescaledb extension" if timescaledb else "PostgreSQL server binaries"
    return None, f"no {wanted} (looked in: {', '.join(looked) or 'nothing found'})"


def _end_with_parent() -> None:
    """In the server's process before exec: ask the kernel for SIGINT when the parent (the test run) dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class PostgresCluster:
    """`initdb` + `postgres` in a temporary directory on a free loopback port: `start()` once, then `stop()` and
    `resume()` at will (an outage keeps the data), `destroy()` at the end.

    `timescaledb` preloads the extension; `durable=False` (tests) turns fsync off; `settings` go into
    postgresql.conf last.
    """

    def __init__(
        self,
        bindir: Path,
        *,
        port: int | None = None,
        timescaledb: bool = False,
        durable: bool = False,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = bindir
        self.port = port or free_port()
        self.timescaledb = timescaledb
        self.durable = durable
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="livinglab-pg-"))
        self.pgdata = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user = _server_user()

    @property
    def url(self) -> str:
        """Superuser URL of the `postgres` database, over TCP."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _config(self) -> dict[str, str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
        }
        if self.timescaledb:
            settings |= {
                "shared_preload_libraries": "timescaledb",
                "timescaledb.telemetry_level": "off",
                # A scheduler per database plus a worker per running job: the defaults (8 worker processes) run out
                # when several test databases live on one server, and policy jobs then wait for a free worker.
                "max_worker_processes": "32",
                "timescaledb.max_background_workers": "24",
            }
        if not self.durable:  # a throwaway cluster: durability buys nothing and costs the shared disk
            settings |= {"fsync": "off", "full_page_writes": "off"}
        return settings | self.settings

    def start(self) -> str:
        """initdb and start; returns the URL."""
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        subprocess.run(  # noqa: S603 - fixed argv
            [*initdb, "--no-sync"], user=self._user, check=True, capture_output=True, timeout=120
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in self._config().items())
        self.resume()
        return self.url

    def resume(self, *, timeout_s: float = 60.0) -> None:
        """Start the server (again) on the same port with the same data; returns once it accepts connections."""
        if self.running:
            return
        self._log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(self.bindir / "postgres"), "-D", str(self.pgdata)],
            user=self._user,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_end_with_parent,  # runs between fork and exec: keep it a single system call
        )
        deadline = time.monotonic() + timeout_s
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "fast") -> None:
        """Shut down, keeping the data: `smart` waits for clients to leave, `fast` cuts open connections and
        checkpoints, `immediate` quits at once as a crash does (the next start recovers from the WAL)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(_SHUTDOWN_SIGNALS[mode])
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def destroy(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _server_user() -> str | None:
    """The user the server runs as: ourselves, or `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "PostgreSQL refuses to run as root and there is no user 'postgres' to run it as: create one"
            " (useradd --system postgres), run as another user, or give a server URL"
        ) from None
    return "postgres"


@contextlib.contextmanager
def database_server(
    configured: str | None = None, *, bindir: Path | None = None, timescaledb: bool = False
) -> Iterator[str]:
    """A server URL for the duration: `configured` when given, else a `PostgresCluster` of our own (binaries as
    `find_bindir(bindir)` finds them), destroyed on exit."""
    if configured:
        yield configured
        return
    found, reason = find_bindir(bindir, timescaledb=timescaledb)
    if found is None:
        raise RuntimeError(reason)
    cluster = PostgresCluster(found, timescaledb=timescaledb)
    try:
        yield cluster.start()
    finally:
        cluster.destroy()
