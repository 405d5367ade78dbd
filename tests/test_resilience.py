"""The resilience policy: backoff that starts over after a success, and deadlines on real connections.

Silent links come from the fault proxy (`tests.support.proxy`): in blackhole mode TCP stays up and nothing is
forwarded, so only the client-side cut can end a wait; the server's timeouts are checked on the server itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from livinglab.resilience import Backoff, DatabasePolicy, DatabaseTimeout, is_transient
from livinglab.settings import CoreSettings
from livinglab.storage import connect, connect_async, extend_deadline, listen_until_stopped
from tests.support.proxy import FaultProxy
from tests.support.roles import wait_until

#: Short deadlines, so a cut takes about two seconds.
POLICY = DatabasePolicy(timeout_s=1.0, grace_s=1.0)


def test_backoff_doubles_to_its_ceiling_and_starts_over_after_a_success() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 6
    backoff.succeeded()
    assert [backoff.failed() for _ in range(2)] == [0.5, 1.0]


def test_backoff_jitter_only_shortens() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.5)
    delays = [backoff.failed() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert max(delays) - min(delays) > 0.2  # it does spread


@pytest.mark.parametrize("args", [(0.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_nonsense(args: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(*args)


def test_settings_make_the_policy() -> None:
    policy = CoreSettings(database_timeout_s=12, database_grace_s=3).database_policy()
    assert (policy.timeout_s, policy.grace_s, policy.cut_after_s) == (12, 3, 15)
    kwargs = policy.connection_kwargs()
    assert kwargs["tcp_user_timeout"] == 15_000
    assert (kwargs["keepalives"], kwargs["keepalives_idle"], kwargs["keepalives_count"]) == (1, 3, 3)


def test_transient_errors() -> None:
    assert is_transient(DatabaseTimeout("silent"))
    assert is_transient(psycopg.errors.QueryCanceled())
    assert is_transient(psycopg.errors.DeadlockDetected())
    assert not is_transient(psycopg.errors.UniqueViolation())
    assert not is_transient(ValueError())


@pytest.mark.integration
def test_the_server_gets_the_policy(database_url: str) -> None:
    with connect(database_url, policy=DatabasePolicy(timeout_s=7.5, grace_s=2.0), application_name="t") as conn:
        names = ("statement_timeout", "idle_in_transaction_session_timeout", "tcp_user_timeout")
        values = [conn.execute("SELECT current_setting(%s)", (n,)).fetchone()[0] for n in names]  # type: ignore[index]
        over_tcp = conn.execute("SELECT inet_server_addr() IS NOT NULL").fetchone() == (True,)
        # On a Unix-domain socket the server ignores the TCP settings and reads them as 0.
        assert values == ["7500ms", "7500ms", "9500" if over_tcp else "0"]
        assert conn.info.get_parameters()["keepalives_idle"] == "2"
    with connect(database_url) as conn:  # no policy: one-off work (migrations) may run as long as it takes
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


@pytest.fixture
def proxy(database_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(int(urlsplit(database_url).port or 5432)) as p:
        yield p


@pytest.mark.integration
def test_a_silent_link_is_cut_at_the_deadline(database_url: str, proxy: FaultProxy) -> None:
    with connect(proxy.route(database_url), policy=POLICY, autocommit=True) as conn:
        conn.execute("SELECT 1")
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(DatabaseTimeout, match="no answer"):
            conn.execute("SELECT 1")
        waited = time.monotonic() - started
        assert conn.closed or conn.broken
    # Not before the deadline; that it comes at all is the DatabaseTimeout above (a test never bounds wall-clock time
    # from above: a busy machine may be late, never early).
    assert waited >= POLICY.cut_after_s, waited


@pytest.mark.integration
def test_a_wait_the_caller_bounds_is_not_cut(database_url: str, proxy: FaultProxy) -> None:
    with connect(proxy.route(database_url), policy=POLICY, autocommit=True) as conn:
        conn.execute("LISTEN nothing_comes")
        proxy.blackhole()
        assert list(conn.notifies(timeout=POLICY.cut_after_s + 1.0)) == []  # longer than the deadline, yet no cut
        proxy.pass_through()
        assert conn.execute("SELECT 2").fetchone() == (2,)


@pytest.mark.integration
def test_extend_deadline_lets_one_long_statement_through(database_url: str) -> None:
    with connect(database_url, policy=POLICY, autocommit=True) as conn:
        extend_deadline(conn, 10.0)
        conn.execute("SET statement_timeout = '10s'")
        assert conn.execute("SELECT pg_sleep(2.5), 1").fetchone() == ("", 1)  # past the policy's 2 s cut
        extend_deadline(conn, None)
        conn.execute("RESET statement_timeout")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(3)")  # the server's own timeout speaks first


@pytest.mark.integration
def test_an_async_connection_is_cut_too(database_url: str, proxy: FaultProxy) -> None:
    async def scenario() -> float:
        async with await connect_async(proxy.route(database_url), policy=POLICY, autocommit=True) as conn:
            await conn.execute("SELECT 1")
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(DatabaseTimeout):
                await conn.execute("SELECT 1")
            return time.monotonic() - started

    waited = asyncio.run(scenario())
    # Not before the deadline; that it comes at all is the DatabaseTimeout above (a test never bounds wall-clock time
    # from above: a busy machine may be late, never early).
    assert waited >= POLICY.cut_after_s, waited


@pytest.mark.integration
def test_a_client_gone_silent_in_a_transaction_releases_its_locks(database_url: str, proxy: FaultProxy) -> None:
    silent = connect(proxy.route(database_url), policy=POLICY)
    try:
        with connect(database_url, policy=DatabasePolicy(timeout_s=30)) as waiting:
            silent.execute("SELECT pg_advisory_xact_lock(4242)")
            proxy.blackhole()
            # The server ends the silent client's transaction after its idle-in-transaction timeout, so the lock
            # comes well before the waiting side's own 30 s statement timeout would cancel it (QueryCanceled).
            waiting.execute("SELECT pg_advisory_xact_lock(4242)")
            waiting.rollback()
    finally:
        silent.close()  # closing sends nothing the blackhole could hold up


@pytest.mark.integration
def test_listen_until_stopped_reconnects_and_starts_its_backoff_over(database_url: str, proxy: FaultProxy) -> None:
    stop = threading.Event()
    served: list[float] = []
    failures: list[tuple[int, str]] = []  # (failures counted before this one, error)
    backoff = Backoff(0.1, 0.2, jitter=0.0)

    def failed(error: str) -> None:
        failures.append((backoff.failures, error))

    def serve(conn: psycopg.Connection[object]) -> None:
        served.append(time.monotonic())
        while not stop.is_set():
            list(conn.notifies(timeout=0.2))
            conn.execute("SELECT 1")

    thread = threading.Thread(
        target=listen_until_stopped,
        args=(proxy.route(database_url),),
        kwargs={
            "policy": POLICY,
            "channel": "test_channel",
            "application_name": "test-listen",
            "stop": stop,
            "serve": serve,
            "failed": failed,
            "what": "test listener",
            "backoff": backoff,
        },
        daemon=True,
    )
    thread.start()
    try:
        wait_until(lambda: served, timeout_s=10)
        proxy.reset()
        wait_until(lambda: failures, timeout_s=10)
        proxy.pass_through()
        wait_until(lambda: len(served) >= 2, timeout_s=10)
        proxy.blackhole()
        wait_until(lambda: len(failures) >= 2, timeout_s=3 * POLICY.cut_after_s)
        assert "DatabaseTimeout" in failures[-1][1]
        proxy.pass_through()
        wait_until(lambda: len(served) >= 3, timeout_s=10)
    finally:
        stop.set()
        thread.join(timeout=10)
    # Each LISTEN that worked started the backoff over: the failure after it counted none before.
    assert [counted for counted, _ in failures[:2]] == [0, 0]
