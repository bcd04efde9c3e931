"""Consuming: the consume loop (offsets committed only after PostgreSQL) and the group-less tail.

Undecodable or schema-invalid records, and records whose handler raises a
:class:`~gen_common.errors.PermanentError`, become ``dead_letter`` rows in the batch's transaction,
so the partition keeps flowing. A :class:`~gen_common.errors.RetryableError` (or a lost database)
rolls the batch back and rewinds to it. While a handler runs, the record's trace context and its
event's job_id / lot_seq / lot_id are bound for logs (:mod:`gen_common.logs`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from gen_common import logs, tracing
from gen_common.db import DB_TROUBLE, Conn
from gen_common.errors import PermanentError, RetryableError
from gen_common.events import Event
from gen_common.settings import KafkaSettings

log = logging.getLogger(__name__)
# A batch that failed with one of these is rolled back and read again after a pause.
REWIND: tuple[type[Exception], ...] = (RetryableError, *DB_TROUBLE)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Route records of ``topic`` (base name), decoded as ``model``, to ``handler``."""

    topic: str
    model: type[Event]
    handler: Callable[[Any, Conn], Awaitable[None]]


async def _dead_letter(conn: Conn, group: str, record: Any, error: str) -> None:
    await conn.execute(
        """INSERT INTO dead_letter
               (consumer_group, topic, kafka_partition, kafka_offset, key, value, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT DO NOTHING""",
        group,
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        error[:4000],
    )
    log.warning(
        "dead-lettered record",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "error": error[:500],
        },
    )


def _bind(record: Any, event: Event) -> None:
    """Bind the record's trace context (a new trace if it has none) and its lot's ids."""
    tracing.bind(tracing.from_headers(record.headers) or tracing.new())
    fields: dict[str, object] = {"event_id": str(event.event_id)}
    if (job_id := getattr(event, "job_id", None)) is not None:
        fields["job_id"] = str(job_id)
        if (lot_seq := getattr(event, "lot_seq", None)) is not None:
            fields["lot_seq"] = lot_seq
        if (lot_id := getattr(event, "lot_id", None)) is not None:
            fields["lot_id"] = str(lot_id)
    logs.context.set(fields)


class _Isolate(Exception):
    """A handler failed permanently in a batch run without savepoints: run it again, isolated."""


async def _handle(
    conn: Conn, group: str, sub: Subscription, record: Any, *, isolated: bool
) -> None:
    try:
        event = sub.model.model_validate_json(record.value or b"")
    except (ValidationError, ValueError) as exc:
        # Not the ids of the batch's previous record: this record has none.
        logs.context.set(None)
        tracing.bind(tracing.from_headers(record.headers) or tracing.new())
        await _dead_letter(conn, group, record, f"invalid_event: {exc}")
        return
    _bind(record, event)
    try:
        if isolated:
            async with conn.transaction():  # a savepoint: only this record's writes undone
                await sub.handler(event, conn)
        else:
            await sub.handler(event, conn)
    except PermanentError as exc:
        if not isolated:
            raise _Isolate from exc
        await _dead_letter(conn, group, record, f"{exc.code}: {exc}")
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("record handled", extra={"topic": record.topic, "offset": record.offset})


async def _apply(
    pool: asyncpg.Pool,
    group: str,
    by_topic: dict[str, Subscription],
    batches: dict[TopicPartition, list[Any]],
) -> None:
    """The batch in ONE transaction. Handlers run without savepoints (two round trips per
    record saved); when one fails permanently the batch is rolled back and run again with a
    savepoint per record, so only the failing record is dead-lettered (its handler and those
    before it run twice, as on any redelivery)."""
    for isolated in (False, True):
        try:
            async with pool.acquire() as conn, conn.transaction():
                for record in (r for records in batches.values() for r in records):
                    await _handle(conn, group, by_topic[record.topic], record, isolated=isolated)
        except _Isolate:
            continue
        return


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
    try:
        await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                continue
            try:
                await _apply(pool, group, by_topic, batches)
            except REWIND as exc:
                log.warning("batch failed, rewinding", extra={"error": repr(exc)})
                _rewind(consumer, batches)
                await asyncio.sleep(retry_backoff_s)
                continue
            finally:
                logs.clear()
                tracing.bind(None)
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # The work is in PostgreSQL; redelivery to the new owner is absorbed by keys.
                log.warning("offset commit failed", extra={"error": repr(exc)})
    finally:
        await consumer.stop()


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
