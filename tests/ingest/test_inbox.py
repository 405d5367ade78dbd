"""The inbox between the network thread and the batch writer: never blocking, bounded, batching on size or time."""

from __future__ import annotations

import threading
import time

from ingest.batch import Message
from ingest.inbox import Inbox


def _message(i: int, *, qos: int = 1, size: int = 10, generation: int = 1) -> Message:
    return Message("t", b"x" * size, i, qos, time.time(), generation)


def test_take_returns_a_full_batch_at_once() -> None:
    inbox = Inbox(max_messages=100, max_bytes=10_000, max_qos0_bytes=1000)
    for i in range(25):
        assert inbox.put(_message(i))
    batch = inbox.take(max_messages=10, max_bytes=10_000, wait_s=1, linger_s=10)
    assert [m.mid for m in batch] == list(range(10))
    assert len(inbox) == 15
    assert inbox.bytes == 150


def test_take_closes_a_batch_on_bytes() -> None:
    inbox = Inbox(max_messages=100, max_bytes=10_000, max_qos0_bytes=1000)
    for i in range(5):
        inbox.put(_message(i, size=100))
    assert len(inbox.take(max_messages=10, max_bytes=250, wait_s=1, linger_s=10)) == 3


def test_take_closes_a_batch_on_time_and_returns_empty_when_idle() -> None:
    inbox = Inbox(max_messages=100, max_bytes=10_000, max_qos0_bytes=1000)
    assert inbox.take(max_messages=10, max_bytes=10_000, wait_s=0.05, linger_s=0.05) == []
    inbox.put(_message(1))
    # Ten messages wanted, one there: it lingered, then gave up waiting for more.
    assert len(inbox.take(max_messages=10, max_bytes=10_000, wait_s=1, linger_s=0.2)) == 1


def test_a_waiting_taker_wakes_when_its_batch_fills() -> None:
    inbox = Inbox(max_messages=100, max_bytes=10_000, max_qos0_bytes=1000)
    got: list[int] = []
    taker = threading.Thread(
        target=lambda: got.extend(m.mid for m in inbox.take(max_messages=5, max_bytes=10_000, wait_s=30, linger_s=30))
    )
    taker.start()
    for i in range(5):
        inbox.put(_message(i))
    taker.join(timeout=10)
    assert not taker.is_alive()
    assert got == [0, 1, 2, 3, 4]


def test_limits_drop_instead_of_blocking() -> None:
    inbox = Inbox(max_messages=3, max_bytes=10_000, max_qos0_bytes=15)
    assert inbox.put(_message(1, qos=0))
    assert not inbox.put(_message(2, qos=0))  # over the QoS 0 byte budget
    assert inbox.put(_message(3))
    assert inbox.put(_message(4))
    assert not inbox.put(_message(5))  # over the message limit: left to the broker
    assert (inbox.dropped_qos0, inbox.dropped_unacknowledged, inbox.high_water) == (1, 1, 3)
    small = Inbox(max_messages=100, max_bytes=25, max_qos0_bytes=25)
    assert small.put(_message(1, size=20))
    assert not small.put(_message(2, size=20))  # over the byte limit


def test_discard_older_keeps_the_current_connection() -> None:
    inbox = Inbox(max_messages=100, max_bytes=10_000, max_qos0_bytes=1000)
    for i in range(4):
        inbox.put(_message(i, generation=1 + i % 2, qos=i % 2))
    assert inbox.discard_older(2) == 2
    assert [m.mid for m in inbox.take(max_messages=10, max_bytes=10_000, wait_s=0, linger_s=0)] == [1, 3]
    assert inbox.bytes == 0
