"""Consuming: the consume loop (offsets committed only after PostgreSQL, at most every
``commit_interval_s``) and the group-less tail.

Each batch is applied in one transaction (:mod:`gen_common.kafka.batch`). A
:class:`~gen_common.errors.RetryableError` (or a lost database) rolls the batch back and rewinds
to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from gen_common import logs, tracing
from gen_common.db import DB_TROUBLE
from gen_common.errors import RetryableError
from gen_common.events import Event
from gen_common.kafka.batch import Subscription, apply
from gen_common.settings import KafkaSettings

log = logging.getLogger(__name__)
# A batch that failed with one of these is rolled back and read again after a pause.
REWIND: tuple[type[Exception], ...] = (RetryableError, *DB_TROUBLE)


async def consume(
    settings: KafkaSettings,
    *,
    pool: asyncpg.Pool,
    group: str,
    subscriptions: Sequence[Subscription],
    retry_backoff_s: float = 1.0,
) -> None:
    """Consume until cancelled; offsets are committed only after the batch's transaction."""
    by_topic = {settings.topic(s.topic): s for s in subscriptions}
    consumer = AIOKafkaConsumer(
        *by_topic,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        group_id=settings.topic(group),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.session_timeout_ms // 3,
        max_poll_records=settings.max_poll_records,
    )
    offsets = _Offsets(consumer, settings.commit_interval_s)
    try:
        await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=offsets.wait_ms())
            if not batches:
                await offsets.commit(idle=True)
                continue
            try:
                await apply(pool, group, by_topic, batches)
            except REWIND as exc:
                log.warning("batch failed, rewinding", extra={"error": repr(exc)})
                _rewind(consumer, batches)
                await asyncio.sleep(retry_backoff_s)
                continue
            finally:
                logs.clear()
                tracing.bind(None)
            offsets.applied({tp: records[-1].offset + 1 for tp, records in batches.items()})
            await offsets.commit(idle=False)
    finally:
        with contextlib.suppress(Exception):
            await offsets.commit(idle=True)
        await consumer.stop()


class _Offsets:
    """Offsets of applied batches, committed at most every ``interval_s`` (and when idle): one
    commit round trip per interval instead of one per batch. Only applied offsets are ever
    committed, so a crash redelivers records whose writes PostgreSQL already has (absorbed by
    their unique keys), never skips one."""

    def __init__(self, consumer: AIOKafkaConsumer, interval_s: float) -> None:
        self._consumer, self._interval_s = consumer, interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._last = float("-inf")

    def wait_ms(self) -> int:
        """How long the next fetch may wait: pending offsets are committed within the interval
        even if no record comes."""
        return max(1, int(self._interval_s * 1000)) if self._pending else 1000

    def applied(self, offsets: dict[TopicPartition, int]) -> None:
        self._pending.update(offsets)

    async def commit(self, *, idle: bool) -> None:
        now = asyncio.get_running_loop().time()
        if not self._pending or (not idle and now - self._last < self._interval_s):
            return
        assigned = self._consumer.assignment()
        pending = {tp: o for tp, o in self._pending.items() if tp in assigned}
        self._pending, self._last = {}, now
        if not pending:
            return
        try:
            await self._consumer.commit(pending)
        except (CommitFailedError, KafkaError) as exc:
            # The work is in PostgreSQL; redelivery to the new owner is absorbed by keys.
            log.warning("offset commit failed", extra={"error": repr(exc)})


def _rewind(consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
    assigned = consumer.assignment()
    for tp, records in batches.items():
        if tp in assigned:
            consumer.seek(tp, records[0].offset)


async def tail(
    settings: KafkaSettings,
    *,
    topics: Sequence[str],
    models: dict[str, type[Event]],
    callback: Callable[[Event], None],
    started: asyncio.Event | None = None,
) -> None:
    """Read ``topics`` from their latest offsets without a group; call ``callback`` per event."""
    consumer = AIOKafkaConsumer(
        *(settings.topic(t) for t in topics),
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    by_topic = {settings.topic(t): models[t] for t in topics}
    try:
        if started is not None:
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event
                await asyncio.sleep(0.05)
            for tp in consumer.assignment():
                await consumer.position(tp)
            started.set()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        event = by_topic[record.topic].model_validate_json(record.value or b"")
                    except (ValidationError, ValueError):
                        continue
                    callback(event)
    finally:
        await consumer.stop()
