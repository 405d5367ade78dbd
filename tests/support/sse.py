"""SSE clients of `GET /v1/stream` in threads, recording every event id they receive, for tests and benchmarks.

A `FeedClient` behaves like the dashboard: it connects, reads, and when the response ends (or, with
`reconnect_every_s`, of its own accord now and then) it connects again with `Last-Event-ID` set to the last id it
received. It records each id, the heartbeats, how every response ended, and the status of every attempt, so a test
can check that every event arrived exactly once and in order, across reconnects.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field

import httpx

from tests.support.roles import Background


@dataclass(slots=True)
class Response:
    """One connection's story: its status, when it opened and ended, and how it ended."""

    status: int
    opened_at: float
    ended_at: float | None = None
    #: "clean" (the server ended the response properly), "left" (the client left), or the error that broke it.
    ending: str = ""
    events: int = 0
    comments: list[str] = field(default_factory=list)


class FeedClient(Background):
    """One SSE client in a thread (see the module docstring). `start()`, then `stop()`."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        reconnect_every_s: float | None = None,
        retry_s: float = 0.2,
        seed: int = 0,
        params: dict[str, str] | None = None,
    ) -> None:
        super().__init__("sse-client")
        self.base_url = base_url
        self.headers = headers
        self.reconnect_every_s = reconnect_every_s
        self.retry_s = retry_s
        self.params = params or {}
        #: The events received (their ids, types and wall-clock receipt times), and the last event id (an id without
        #: data moves it too).
        self.ids: list[int] = []
        self.types: list[str] = []
        self.received_at: list[float] = []
        self.position: int | None = None
        self.heartbeats: list[float] = []
        self.responses: list[Response] = []
        #: The position the first response started at (its "connected, last event id N" comment).
        self.first_position: int | None = None
        self._rng = random.Random(seed)

    @property
    def last_id(self) -> int | None:
        return self.ids[-1] if self.ids else None

    def connected(self) -> bool:
        return any(r.status == 200 for r in self.responses)

    def loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10.0, read=30.0)) as http:
            while not self.stopping.is_set():
                self._one_response(http)
                self.stopping.wait(self.retry_s)

    def _one_response(self, http: httpx.Client) -> None:
        headers = dict(self.headers)
        if self.position is not None:
            headers["Last-Event-ID"] = str(self.position)
        leave_at = None
        if self.reconnect_every_s is not None:
            leave_at = time.monotonic() + self.reconnect_every_s * (0.5 + self._rng.random())
        try:
            with http.stream("GET", "/v1/stream", headers=headers, params=self.params) as response:
                record = Response(response.status_code, time.monotonic())
                self.responses.append(record)
                if response.status_code != 200:
                    response.read()
                    record.ending, record.ended_at = "refused", time.monotonic()
                    return
                record.ending = self._read(response, record, leave_at)
        except httpx.HTTPError as exc:
            if not self.responses or self.responses[-1].ended_at is not None:
                self.responses.append(Response(0, time.monotonic()))
            self.responses[-1].ending = f"{type(exc).__name__}: {exc}"
        self.responses[-1].ended_at = time.monotonic()

    def _read(self, response: httpx.Response, record: Response, leave_at: float | None) -> str:
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if self.stopping.is_set() or (leave_at is not None and time.monotonic() >= leave_at):
                return "left"
            if line.startswith(":"):
                comment = line[1:].strip()
                record.comments.append(comment)
                if comment == "heartbeat":
                    self.heartbeats.append(time.monotonic())
                elif comment.startswith("connected, last event id ") and self.first_position is None:
                    self.first_position = int(comment.rsplit(" ", 1)[1])
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            else:
                if "id" in fields:
                    self.position = int(fields["id"])
                if "data" in fields:
                    self.ids.append(int(fields["id"]))
                    self.types.append(fields.get("event", ""))
                    self.received_at.append(time.time())
                    record.events += 1
                fields = {}
        return "clean"


def check_exactly_once(client: FeedClient, stored: list[int]) -> tuple[int, int]:
    """(missing, repeated): how many ids of `stored` (the events the client asked for) after the client's first
    position it never received, and how many times an id did not follow the one before it in order (a duplicate, or
    one sent out of order)."""
    assert client.first_position is not None, "the client never connected"
    expected = {i for i in stored if i > client.first_position}
    received = client.ids
    repeated = sum(1 for a, b in itertools.pairwise(received) if b <= a)
    return len(expected - set(received)), repeated
