"""The deliverer: drains the outbox `notification_deliveries` to webhooks, MQTT and email, at least once.

It wakes on NOTIFY `livinglab_deliveries` (sent in the transaction that queues deliveries), when a retry comes due,
and every `LIVINGLAB_NOTIFY_POLL_INTERVAL_S` regardless; it claims due rows (`notify.outbox`), attempts up to
`LIVINGLAB_NOTIFY_CONCURRENCY` of them at once, and records each outcome. A delivery is marked delivered only after
the receiver accepted it; a failed attempt is retried after 5 s, then 10 s, 20 s, ... up to 10 minutes between
attempts, until the delivery is 24 hours old (then `failed`). Any number of deliverers may run, each with its own
`LIVINGLAB_NOTIFY_WORKER_ID`.

Delivery talks to the outside world and never holds a database transaction while it waits for a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from livinglab.notifications import (
    CHANNEL_DELIVERIES,
    ChannelConfig,
    ChannelConfigError,
    EmailConfig,
    MqttConfig,
    WebhookConfig,
    channel_config,
)
from livinglab.resilience import Backoff
from livinglab.settings import MqttUrl
from livinglab.storage import check_schema, connect, connect_async, create_async_pool, describe_error
from notify import outbox
from notify._email import EmailSender
from notify._mqtt import MqttSender
from notify._webhook import WebhookSender
from notify.errors import DeliveryError
from notify.outbox import Delivery, Outcome
from notify.settings import NotifySettings

log = logging.getLogger(__name__)


class Senders:
    """One sender per channel type, sharing their connections across deliveries."""

    def __init__(self, settings: NotifySettings) -> None:
        self.webhook = WebhookSender(timeout_s=settings.webhook_timeout_s, allowed=settings.allowed_networks())
        mqtt_url = MqttUrl.parse(settings.mqtt_url) if settings.mqtt_url else None
        self.mqtt = MqttSender(
            mqtt_url,
            client_id=settings.notify_worker_id,
            protocol=settings.mqtt_protocol,
            timeout_s=settings.webhook_timeout_s,
        )
        self.email = EmailSender(settings)

    def send(self, config: ChannelConfig, delivery_id: str, event: str, body: bytes) -> Awaitable[None]:
        if isinstance(config, WebhookConfig):
            return self.webhook.send(config, delivery_id, event, body)
        if isinstance(config, MqttConfig):
            return self.mqtt.send(config, delivery_id, event, body)
        assert isinstance(config, EmailConfig)
        return self.email.send(config, delivery_id, event, body)

    async def aclose(self) -> None:
        await self.webhook.aclose()
        await self.mqtt.aclose()


class Deliverer:
    """Runs until `stop()` (callable from a signal handler or another thread)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._policy = settings.database_policy()
        self._worker = settings.notify_worker_id
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._outcomes: asyncio.Queue[Outcome] | None = None
        #: When retries this deliverer scheduled come due (monotonic clock, a heap).
        self._retries_due: list[float] = []
        #: Outcomes of attempts since start.
        self.delivered = 0
        self.retried = 0
        self.failed = 0

    def stop(self) -> None:
        self._stop_requested = True
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stopped.set)

    def run(self) -> None:
        with connect(self._database_url, policy=self._policy, application_name=self._worker) as conn:
            check_schema(conn)
        asyncio.run(self.run_async())

    async def run_async(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped, self._wake = asyncio.Event(), asyncio.Event()
        if self._stop_requested:
            return
        senders = Senders(self.settings)
        # No round trip before each loan: a broken connection fails its query, which is retried after a backoff,
        # and the pool replaces it; a check per loan would double the queries of every delivery.
        pool = create_async_pool(
            self._database_url, name=f"notify-{self._worker}", policy=self._policy, min_size=2, max_size=4, check=None
        )
        await pool.open()
        self._outcomes = asyncio.Queue()
        listener = asyncio.create_task(self._listen(), name="notify-listen")
        recorder = asyncio.create_task(self._recorder(pool), name="notify-record")
        log.info("deliverer %s started (%d at once)", self._worker, self.settings.notify_concurrency)
        try:
            await self._claim_loop(pool, senders)
        finally:
            listener.cancel()
            await self._drain()
            # What the attempts came to is stored before the pool closes (within the database's deadline).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outcomes.join(), self._policy.cut_after_s)
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await senders.aclose()
            await pool.close()
            log.info(
                "deliverer %s stopped: %d delivered, %d retried, %d failed",
                self._worker,
                self.delivered,
                self.retried,
                self.failed,
            )

    # ---- waiting -----------------------------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until woken or stopped."""
        assert self._stopped is not None
        assert self._wake is not None
        waits = [asyncio.ensure_future(self._stopped.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    @property
    def _stopping(self) -> bool:
        return self._stop_requested or (self._stopped is not None and self._stopped.is_set())

    async def _listen(self) -> None:
        """LISTEN for queued deliveries and wake the claim loop on each NOTIFY (reconnecting after failures)."""
        assert self._wake is not None
        backoff = Backoff(0.5, 10.0)
        while not self._stopping:
            try:
                conn = await connect_async(
                    self._database_url, policy=self._policy, application_name=f"{self._worker}-listen", autocommit=True
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL_DELIVERIES)))
                    backoff.succeeded()
                    self._wake.set()  # what was queued while nobody listened
                    while not self._stopping:
                        async for _ in conn.notifies(timeout=self.settings.notify_poll_interval_s):
                            self._wake.set()
                        await conn.execute("SELECT 1")  # a query is what notices a link gone silent
            except psycopg.Error as exc:
                delay = backoff.failed()
                log.warning("listening for deliveries: %s; again in %.1f s", describe_error(exc), delay)
                await asyncio.sleep(delay)

    # ---- claiming ----------------------------------------------------------------------------------------------

    async def _claim_loop(self, pool: AsyncConnectionPool[Any], senders: Senders) -> None:
        assert self._wake is not None
        settings = self.settings
        backoff = Backoff(0.5, 10.0)
        took_back = False
        while not self._stopping:
            self._wake.clear()  # before the claim: a NOTIFY arriving during it wakes the next wait
            free = settings.notify_concurrency - len(self._in_flight)
            claimed: list[Delivery] = []
            next_due_s: float | None = None
            try:
                async with pool.connection() as conn:
                    await conn.set_autocommit(True)
                    if not took_back:
                        taken = await outbox.take_back(conn, worker=self._worker)
                        if taken:
                            log.info("took back %d deliveries held by an earlier run of %s", taken, self._worker)
                        took_back = True
                    if free > 0:
                        claimed = await outbox.claim(
                            conn, worker=self._worker, limit=free, lease_s=settings.notify_lease_s
                        )
                    if not claimed:  # nothing is due: when is the next one (of any deliverer)?
                        next_due_s = await outbox.seconds_to_next_due(conn)
                backoff.succeeded()
            except psycopg.Error as exc:
                delay = backoff.failed()
                log.warning("claiming deliveries: %s; again in %.1f s", describe_error(exc), delay)
                if self._stopped is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopped.wait(), delay)
                continue
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(senders, delivery))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            if self._in_flight and len(self._in_flight) >= settings.notify_concurrency:
                await self._sleep(settings.notify_poll_interval_s)  # a finished attempt wakes it
                continue
            if claimed and len(claimed) == free:
                continue  # there may be more due: claim again
            # Asleep until a NOTIFY, a retry of ours comes due, the next due row the database named, or the poll.
            wait_s = settings.notify_poll_interval_s
            if next_due_s is not None:
                wait_s = min(wait_s, next_due_s + 0.01)
            now = time.monotonic()
            while self._retries_due and self._retries_due[0] <= now:
                heapq.heappop(self._retries_due)
            if self._retries_due:
                wait_s = min(wait_s, self._retries_due[0] - now + 0.01)
            await self._sleep(wait_s)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._wake is not None and len(self._in_flight) == self.settings.notify_concurrency - 1:
            self._wake.set()  # a slot is free again for a claim loop that waits on a full house
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery attempt failed unexpectedly", exc_info=task.exception())

    async def _drain(self) -> None:
        """On stop: let attempts under way finish (within the webhook timeout); what is left is taken back by the
        next run under this worker id, or by any deliverer when its lease runs out."""
        if not self._in_flight:
            return
        pending = set(self._in_flight)
        _, unfinished = await asyncio.wait(pending, timeout=self.settings.webhook_timeout_s + 2)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    # ---- one attempt -------------------------------------------------------------------------------------------

    async def _attempt(self, senders: Senders, delivery: Delivery) -> None:
        assert self._outcomes is not None
        delivery_id = str(delivery.delivery_id)
        if delivery.channel_cities and delivery.city not in delivery.channel_cities:
            error = f"the alarm is of {delivery.city!r}; the channel carries {', '.join(delivery.channel_cities)} only"
            self._outcomes.put_nowait(Outcome(delivery, error, permanent=True))
            return
        try:
            config = channel_config(delivery.channel_type, delivery.config, topic_prefix=self.settings.topic_prefix)
            await senders.send(config, delivery_id, delivery.event, delivery.body)
        except ChannelConfigError as exc:
            self._outcomes.put_nowait(Outcome(delivery, str(exc), permanent=True))
        except DeliveryError as exc:
            delay_s = self.settings.retry_delay_s(delivery.attempts)
            log.info("delivery %s (attempt %d): %s; again in %.0f s", delivery_id, delivery.attempts, exc, delay_s)
            heapq.heappush(self._retries_due, time.monotonic() + delay_s)
            self._outcomes.put_nowait(Outcome(delivery, str(exc), delay_s=delay_s))
        else:
            self._outcomes.put_nowait(Outcome(delivery))

    async def _recorder(self, pool: AsyncConnectionPool[Any]) -> None:
        """Store outcomes as they come, all those waiting in one round of statements (trying again through a
        database outage; what is never stored is attempted again when its lease runs out)."""
        assert self._outcomes is not None
        backoff = Backoff(0.2, 5.0)
        while True:
            batch = [await self._outcomes.get()]
            while not self._outcomes.empty() and len(batch) < 1000:
                batch.append(self._outcomes.get_nowait())
            while True:
                try:
                    async with pool.connection() as conn:
                        await conn.set_autocommit(True)
                        recorded = await outbox.record_outcomes(conn, batch, retry_for_s=self.settings.retry_for_s)
                    backoff.succeeded()
                    break
                except psycopg.Error as exc:
                    delay = backoff.failed()
                    log.warning("recording %d outcomes: %s; again in %.1f s", len(batch), describe_error(exc), delay)
                    await asyncio.sleep(delay)
            self.delivered += recorded.delivered
            self.retried += recorded.retried
            self.failed += recorded.failed
            for outcome in batch:
                if outcome.permanent:
                    log.warning("delivery %s: %s", outcome.delivery.delivery_id, outcome.error)
                self._outcomes.task_done()
