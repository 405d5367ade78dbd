"""The resilience policy every role follows on its database links: deadlines, and backoff between attempts.

A database link can fail loudly (a reset, a restart, a terminated backend: the next call raises at once) or
silently (a partition, a peer that stopped answering: writes land in the kernel's buffer and a read never returns;
TCP keepalive takes hours by default and does not fire at all while data is unacknowledged). A silent link that
nobody notices stalls the role that waits on it, and, inside a transaction, every other process that waits for that
transaction's locks. So every role's connections carry the same deadlines, all derived from one `DatabasePolicy`:

- `statement_timeout = timeout_s` (server): a statement running longer (a slow query, a lock wait) is cancelled;
- `idle_in_transaction_session_timeout = timeout_s` (server): a transaction whose client went silent ends, and
  its locks are released for the processes waiting on them;
- a client-side cut at `timeout_s + grace_s`: a wait for the server with no answer shuts the socket down, and the
  call raises `DatabaseTimeout`;
- `tcp_user_timeout` and TCP keepalives (libpq's and the server's side): a dead peer on a real network is noticed
  with or without data in flight.

The server's own timeouts fire first whenever the server can still speak, so its error says what happened; only a
link that carries nothing any more reaches the client-side cut. The cut covers every wait of a connection opened
through `livinglab.storage` with a policy (queries, COPY, COMMIT), except a wait the caller bounded itself, such as
`notifies(timeout=...)`.

After a failure, a role retries with a `Backoff`: the first delay is short, each further failure doubles it up to a
ceiling, and a success starts again from the first delay, so a link that failed once an hour ago does not make
today's reconnect wait the longest delay.

Use, in a role:

    policy = settings.database_policy()
    backoff = Backoff(first_s=0.5, max_s=10.0)
    while not stop.is_set():
        try:
            with connect(url, policy=policy, application_name="livinglab-x") as conn:
                backoff.succeeded()
                work(conn)
        except psycopg.OperationalError as exc:   # DatabaseTimeout included
            stop.wait(backoff.failed())

The public surface is `DatabasePolicy`, `Backoff`, `DatabaseTimeout` and `is_transient`, plus the connection
helpers of `livinglab.storage` (`connect`, `connect_async`, `create_pool`, `create_async_pool`, `extend_deadline`,
`listen_until_stopped`). docs/operations.md describes the policy for operators.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors

#: Keepalive probes sent before a silent peer is declared dead.
KEEPALIVE_COUNT = 3


class DatabaseTimeout(psycopg.OperationalError):
    """The server did not answer within the connection's deadline; the connection was cut and must be replaced."""


@dataclass(frozen=True, slots=True)
class DatabasePolicy:
    """The deadlines of one role's database connections (see the module docstring).

    `timeout_s` bounds a statement and an idle transaction on the server; `grace_s` is how much longer the client
    waits for an answer before it takes the link for dead.
    """

    timeout_s: float = 30.0
    grace_s: float = 5.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.grace_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("database timeouts must be positive")

    @property
    def cut_after_s(self) -> float:
        """How long a wait for the server may last before the client cuts the connection."""
        return self.timeout_s + self.grace_s

    def connection_kwargs(self) -> dict[str, Any]:
        """libpq connection parameters that carry the policy (for `psycopg.connect` and pools)."""
        timeout_ms = max(1, round(self.timeout_s * 1000))
        cut_ms = max(1, round(self.cut_after_s * 1000))
        # Keepalive: probes start after `grace_s` of silence, then KEEPALIVE_COUNT probes in another `grace_s`, so
        # an idle connection to a dead peer is noticed within about 2 x grace (libpq takes whole seconds).
        idle_s = max(1, math.ceil(self.grace_s))
        interval_s = max(1, math.ceil(self.grace_s / KEEPALIVE_COUNT))
        server = {
            "statement_timeout": timeout_ms,
            "idle_in_transaction_session_timeout": timeout_ms,
            # The server's side of the same link: a backend whose client vanished ends instead of lingering.
            "tcp_keepalives_idle": idle_s,
            "tcp_keepalives_interval": interval_s,
            "tcp_keepalives_count": KEEPALIVE_COUNT,
            "tcp_user_timeout": cut_ms,
        }
        return {
            "connect_timeout": max(2, math.ceil(self.connect_timeout_s)),  # libpq's minimum is 2
            "keepalives": 1,
            "keepalives_idle": idle_s,
            "keepalives_interval": interval_s,
            "keepalives_count": KEEPALIVE_COUNT,
            "tcp_user_timeout": cut_ms,
            "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        }


class Backoff:
    """Delays between attempts: `first_s`, then doubling (by `factor`) up to `max_s`; `succeeded()` starts over.

    `jitter` shortens each delay by a random share of up to that fraction, so replicas that failed together do not
    retry in lockstep.
    """

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0, *, factor: float = 2.0, jitter: float = 0.1) -> None:
        if first_s <= 0 or max_s < first_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < first_s <= max_s, factor >= 1 and 0 <= jitter < 1")
        self.first_s = first_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        #: Failures since the last success.
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; returns how long to wait before the next attempt."""
        delay = min(self.max_s, self.first_s * self.factor**self.failures)
        self.failures += 1
        return delay * (1.0 - self.jitter * random.random())  # noqa: S311 - spreading retries, not a secret

    def succeeded(self) -> None:
        """Count a success: the next failure waits `first_s` again."""
        self.failures = 0


#: Errors after which the same work may simply be tried again (the connection may or may not be usable).
_TRANSIENT = (
    psycopg.OperationalError,  # the link or the server went away (DatabaseTimeout included)
    pg_errors.QueryCanceled,  # statement_timeout
    pg_errors.LockNotAvailable,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.IdleInTransactionSessionTimeout,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a database failure that retrying can cure (an outage, a timeout, a lost race), as opposed
    to one that would fail again the same way (a bug, a constraint the data breaks)."""
    return isinstance(exc, _TRANSIENT)
