"""The sender: claim due deliveries, sign and send each one, record the attempt.

:class:`Sender` keeps up to ``workers`` sends in flight. :meth:`Sender.run_once` claims and sends
one round and waits for it (tests drive it step by step with a manual clock); :meth:`Sender.run`
loops, woken by NOTIFY from the consumer. A claim commits before the send, so no lock is held
while a receiver is slow; a SIGKILL leaves the lease to expire and :meth:`Sender.reap` re-queues
the delivery (at-least-once: the receiver dedupes by ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets as pysecrets
import time
from datetime import datetime, timedelta

import asyncpg
from gen_common.db import DB_TROUBLE

from gen_notifier import deliver, deliveries, endpoints, signing
from gen_notifier.deliver import Outcome
from gen_notifier.handler import WAKE_CHANNEL
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import Clock, next_delay, parse_retry_after
from gen_notifier.settings import NotifierOptions

log = logging.getLogger(__name__)
# A loop pass that failed with one of these is logged and tried again; the rows stay put.
DB_OR_SQL: tuple[type[Exception], ...] = (*DB_TROUBLE, asyncpg.PostgresError)


def decide(
    o: NotifierOptions,
    attempt: int,
    trigger: str,
    outcome: Outcome,
    now: datetime,
    rng: random.Random | None = None,
) -> tuple[str, datetime | None]:
    """The delivery's next status, and when to try again (None: never)."""
    if outcome.succeeded:
        return "delivered", None
    if outcome.gone:
        return "disabled", None
    if outcome.final or trigger == "manual":
        return "failed", None
    delay = next_delay(
        o.schedule_s,
        attempt,
        overloaded=outcome.overloaded,
        retry_after=parse_retry_after(outcome.retry_after, now),
        overload_min_s=o.overload_min_s,
        jitter=o.jitter,
        rng=rng,
    )
    if delay is None:
        return "exhausted", None
    return "queued", now + timedelta(seconds=delay)


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PinnedClient,
        options: NotifierOptions,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.pool = pool
        self.client = client
        self.o = options
        self.clock = clock
        self.metrics = metrics
        self.owner = f"notifier-{pysecrets.token_hex(6)}"
        self._slots = asyncio.Semaphore(options.workers)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._results: asyncio.Queue[deliveries.Result] = asyncio.Queue()

    async def _claim(self, limit: int) -> list[tuple[asyncpg.Record, asyncpg.Record]]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await deliveries.claim(
                conn,
                owner=self.owner,
                lease_s=self.o.lease_s,
                limit=limit,
                in_flight=self.o.per_endpoint_in_flight,
                now=self.clock.now(),
            )

    async def send_one(
        self, delivery: asyncpg.Record, endpoint: asyncpg.Record
    ) -> deliveries.Result:
        """Sign and send one delivery; the result still has to be recorded."""
        now = self.clock.now()
        body = bytes(delivery["body"])
        shared = self.o.shared_key.get_secret_value()
        active = signing.active_secrets(endpoint["secret"], endpoint["old_secrets"], shared, now)
        # webhook-timestamp is wall-clock time: receivers judge freshness by their own clock.
        headers = signing.headers(
            msg_id=delivery["msg_id"], timestamp=int(time.time()), body=body, secrets=active
        )
        outcome = await deliver.send(
            self.client,
            endpoint["url"],
            body,
            headers,
            timeout_s=self.o.timeout_s,
            max_bytes=self.o.response_max_bytes,
        )
        status, next_at = decide(
            self.o, delivery["attempts"], delivery["trigger"], outcome, self.clock.now()
        )
        return deliveries.Result(delivery, outcome, now, status, next_at)

    async def record(self, results: list[deliveries.Result]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            kept = await deliveries.record(
                conn, results, owner=self.owner, max_body=self.o.response_max_bytes
            )
        for r in results:
            self.metrics.attempt(r.outcome.error_class or "success", r.status)
            log.info(
                "delivery attempt",
                extra={
                    "job_id": str(r.delivery["job_id"]),
                    "msg_id": r.delivery["msg_id"],
                    "attempt": r.delivery["attempts"],
                    "status": r.status,
                    "status_code": r.outcome.status_code,
                    "error_class": r.outcome.error_class,
                },
            )
        if kept < len(results):
            log.warning("leases lost before recording", extra={"lost": len(results) - kept})

    async def _guarded(self, delivery: asyncpg.Record, endpoint: asyncpg.Record) -> None:
        try:
            self._results.put_nowait(await self.send_one(delivery, endpoint))
        finally:
            self._slots.release()

    async def _recorder(self) -> None:
        """Write finished attempts in batches (one transaction per batch)."""
        while True:
            batch = [await self._results.get()]
            while not self._results.empty() and len(batch) < 500:
                batch.append(self._results.get_nowait())
            try:
                await self.record(batch)
            except DB_OR_SQL as exc:
                # leases expire; reap re-queues
                log.warning("recording attempts failed", extra={"error": repr(exc)})
            self._wake.set()

    async def run_once(self) -> int:
        """Claim one round of due deliveries, send them all, record them; returns how many."""
        claimed = await self._claim(self.o.claim_batch)
        results = await asyncio.gather(*(self.send_one(d, e) for d, e in claimed))
        await self.record(list(results))
        return len(claimed)

    async def run(self) -> None:
        listener = await self.pool.acquire()
        recorder = asyncio.create_task(self._recorder())
        self._in_flight.add(recorder)
        try:
            await listener.add_listener(WAKE_CHANNEL, self._on_notify)
            while True:
                await self._fill()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.o.idle_poll_s)
        finally:
            await self._shutdown(recorder)
            with contextlib.suppress(*DB_OR_SQL):
                await listener.remove_listener(WAKE_CHANNEL, self._on_notify)
                async with self.pool.acquire() as conn:
                    await deliveries.release(conn, self.owner)
            await self.pool.release(listener)

    async def _shutdown(self, recorder: asyncio.Task[None]) -> None:
        """Let sends in flight finish (bounded by the attempt timeout) and record them."""
        sends = [t for t in self._in_flight if t is not recorder]
        if sends:
            await asyncio.wait(sends, timeout=self.o.timeout_s + 1)
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        left = [self._results.get_nowait() for _ in range(self._results.qsize())]
        with contextlib.suppress(*DB_OR_SQL):
            await self.record(left)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _fill(self) -> None:
        """Claim as long as there are free slots and due deliveries."""
        while True:
            await self._slots.acquire()
            free = 1
            while free < self.o.claim_batch and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                claimed = await self._claim(free)
            except DB_OR_SQL as exc:
                log.warning("claim failed", extra={"error": repr(exc)})
                claimed = []
            for _ in range(free - len(claimed)):
                self._slots.release()
            for delivery, endpoint in claimed:
                task = asyncio.create_task(self._guarded(delivery, endpoint))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if len(claimed) < free:
                return

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A bug, not a receiver's behaviour: the lease expires and the reaper re-queues.
            log.error("send task crashed", exc_info=exc)

    async def reap_loop(self) -> None:
        while True:
            with contextlib.suppress(*DB_OR_SQL):
                async with self.pool.acquire() as conn:
                    if n := await deliveries.reap(conn, self.clock.now()):
                        log.warning("re-queued deliveries with expired leases", extra={"n": n})
                        self._wake.set()
            await asyncio.sleep(self.o.reap_interval_s)

    async def breaker_loop(self) -> None:
        while True:
            with contextlib.suppress(*DB_OR_SQL):
                async with self.pool.acquire() as conn:
                    now = self.clock.now()
                    for url in await endpoints.sample_breakers(conn, now=now, o=self.o):
                        log.warning("endpoint breaker opened", extra={"url": url})
                    for url in await endpoints.disable_dead(
                        conn, now=now, after_s=self.o.disable_after_s
                    ):
                        log.warning("endpoint disabled: failing for too long", extra={"url": url})
            await asyncio.sleep(self.o.breaker_interval_s)
