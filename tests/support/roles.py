"""Run platform roles in background threads of the test process, and wait for their effects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, Self

import psycopg


class Role(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...


@contextmanager
def running(*roles: Role) -> Iterator[None]:
    """Run each role's `run()` in a thread; stop and join them on exit (re-raising a role's crash)."""
    errors: list[BaseException] = []

    def target(role: Role) -> None:
        try:
            role.run()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(r,), daemon=True, name=type(r).__name__) for r in roles]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for r in roles:
            r.stop()
        for t in threads:
            t.join(timeout=30)
    if errors:
        raise errors[0]


class Background:
    """A loop (`loop`, watching `self.stopping`) in a daemon thread of its own: `start()`, then `stop()`, which joins
    it and re-raises what it raised."""

    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    def loop(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error

    def _guarded(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 60.0, interval_s: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; return it, or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value: {last!r})")


def scalar(url: str, query: str, params: Any = None) -> Any:
    """The first column of the first row of `query`."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Every row of `query`."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()
