"""The queue between the MQTT network thread and the batch writer.

`put` never blocks: a blocked network thread would stop answering keepalives, and after a long database outage the
broker would drop the connection. Memory is bounded instead by what the broker may send without an
acknowledgement: QoS 1 messages are acknowledged only after COMMIT, so no more than the in-flight window (MQTT 5
Receive Maximum, or the broker's `max_inflight_messages` for 3.1.1 clients) should ever be unacknowledged.

Brokers do not always keep to that window (Mosquitto before 2.0.13 sends up to a whole window more for every
acknowledgement once it has queued messages for a client), so the inbox has hard limits too, `max_messages` and
`max_bytes`. A QoS 1 message beyond them is dropped unacknowledged: the broker still holds it and sends it again
after the next reconnect, which the pipeline forces once the inbox has drained (see `ingest.pipeline`). QoS 0
messages carry no delivery promise and no flow control; beyond `max_qos0_bytes` of queued QoS 0 payload they are
dropped for good.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ingest.batch import Message


class Inbox:
    """A deque of received messages with a condition for the batch writer."""

    def __init__(self, *, max_messages: int, max_bytes: int, max_qos0_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_qos0_bytes = max_qos0_bytes
        self._items: deque[Message] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._wanted = 1  # wake the taker once this many messages wait
        self._bytes = 0
        self._qos0_bytes = 0
        self.dropped_qos0 = 0
        self.dropped_unacknowledged = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Payload bytes queued."""
        return self._bytes

    def put(self, message: Message) -> bool:
        """Queue a message; False when it was dropped (see the module docstring)."""
        size = len(message.payload)
        with self._ready:
            full = len(self._items) >= self.max_messages or self._bytes + size > self.max_bytes
            if message.qos == 0:
                if full or self._qos0_bytes + size > self.max_qos0_bytes:
                    self.dropped_qos0 += 1
                    return False
                self._qos0_bytes += size
            elif full:
                self.dropped_unacknowledged += 1
                return False
            self._items.append(message)
            self._bytes += size
            count = len(self._items)
            if count > self.high_water:
                self.high_water = count
            if count >= self._wanted:
                self._ready.notify()
        return True

    def take(self, *, max_messages: int, max_bytes: int, wait_s: float, linger_s: float) -> list[Message]:
        """The next batch: waits up to `wait_s` for a first message, then up to `linger_s` for more, returning as
        soon as `max_messages` messages or `max_bytes` of payload are in hand."""
        batch: list[Message] = []
        size = 0
        with self._ready:
            if not self._items:
                self._wanted = 1
                self._ready.wait(wait_s)
                if not self._items:
                    return batch
            deadline = time.monotonic() + linger_s
            while True:
                items = self._items  # discard_older may have replaced it while we waited
                taken = 0
                qos0 = 0
                while items and len(batch) < max_messages and size < max_bytes:
                    message = items.popleft()
                    batch.append(message)
                    n = len(message.payload)
                    size += n
                    taken += n
                    if message.qos == 0:
                        qos0 += n
                self._bytes -= taken
                self._qos0_bytes -= qos0
                if len(batch) >= max_messages or size >= max_bytes:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wanted = max_messages - len(batch)
                self._ready.wait(remaining)
            self._wanted = 1
        return batch

    def discard_older(self, generation: int) -> int:
        """Drop queued messages received on connections before `generation`; returns how many.

        Called when the broker resumed the session: it redelivers every message not yet acknowledged.
        """
        with self._ready:
            kept = deque(m for m in self._items if m.generation >= generation)
            dropped = len(self._items) - len(kept)
            self._items = kept
            self._bytes = sum(len(m.payload) for m in kept)
            self._qos0_bytes = sum(len(m.payload) for m in kept if m.qos == 0)
        return dropped
