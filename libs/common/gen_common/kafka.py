"""Kafka, and the only module that imports aiokafka.

- :func:`open_publisher` — an idempotent producer (``acks=all``); ``publish`` returns once the
  event is durably in Kafka.
- :func:`consume` — the consume loop: decode each record into its event model, run the handler
  inside the batch's PostgreSQL transaction (a savepoint per record), commit the transaction, and
  only then commit the offsets. Undecodable or schema-invalid records, and records whose handler
  raises a :class:`~gen_common.errors.PermanentError`, become ``dead_letter`` rows in that same
  transaction, so the partition keeps flowing. A :class:`~gen_common.errors.RetryableError` (or a
  lost database) rolls the batch back and rewinds to it. Cancellation stops cleanly without
  committing anything that was not processed.
- :func:`tail` — a group-less reader from the latest offset (sync replies).
- :func:`ensure_topics` — create the topics with the configured partitions and replication.
- :func:`open_lag_probe` — a group's committed offsets against its topics' end offsets (metrics).

Every produced record carries a W3C ``traceparent`` header (a child of the bound or given trace
context, see :mod:`gen_common.tracing`); the consume loop binds each record's trace context and
its event's job_id / lot_seq / lot_id (:mod:`gen_common.logs`) while its handler runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from gen_common import logs, tracing
from gen_common.db import Conn
from gen_common.errors import InfrastructureError, PermanentError, RetryableError
from gen_common.events import TOPIC_OF, TOPICS, Event, key_of
from gen_common.settings import KafkaSettings

log = logging.getLogger(__name__)
TRACEPARENT = tracing.TRACEPARENT


@dataclass(frozen=True, slots=True)
class Subscription:
    """Route records of ``topic`` (base name), decoded as ``model``, to ``handler``."""

    topic: str
    model: type[Event]
    handler: Callable[[Any, Conn], Awaitable[None]]


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def new_traceparent() -> str:
    return tracing.new()


class Publisher:
    """Publishes events with ``acks=all``; every call returns once the broker acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._settings = settings

    def _headers(self, traceparent: str | None = None) -> list[tuple[str, bytes]]:
        """A child of ``traceparent``, else of the bound context, else a new trace."""
        return [(TRACEPARENT, tracing.child(traceparent or tracing.current()).encode())]

    async def publish(self, event: Event) -> None:
        await self.publish_raw(TOPIC_OF[event.type], key_of(event), encode(event))

    async def publish_raw(
        self, topic: str, key: str, value: bytes, *, traceparent: str | None = None
    ) -> None:
        await self._producer.send_and_wait(
            self._settings.topic(topic),
            value,
            key=key.encode(),
            headers=self._headers(traceparent),
        )

    async def publish_many(self, events: Iterable[Event]) -> int:
        """Send every event, then wait for all acknowledgements; raises if any failed."""
        headers = self._headers()
        futures = [
            await self._producer.send(
                self._settings.topic(TOPIC_OF[e.type]),
                encode(e),
                key=key_of(e).encode(),
                headers=headers,
            )
            for e in events
        ]
        await asyncio.gather(*futures)
        return len(futures)

    async def publish_encoded(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        """Like :meth:`publish_many` for events already encoded: ``(key, value)`` pairs on one
        topic (base name). Waits for every acknowledgement; raises if any failed."""
        headers = self._headers()
        name = self._settings.topic(topic)
        futures = [
            await self._producer.send(name, value, key=key.encode(), headers=headers)
            for key, value in records
        ]
        await asyncio.gather(*futures)
        return len(futures)


@asynccontextmanager
async def open_publisher(settings: KafkaSettings) -> AsyncIterator[Publisher]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        request_timeout_ms=settings.request_timeout_ms,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        yield Publisher(producer, settings)
    finally:
        await producer.stop()


async def ensure_topics(settings: KafkaSettings, names: Sequence[str] = TOPICS) -> None:
    """Create missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(name),
                settings.partitions,
                settings.replication_factor,
                topic_configs={"min.insync.replicas": str(settings.min_insync_replicas)},
            )
            for name in names
            if settings.topic(name) not in existing
        ]
        if wanted:
            with suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


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


async def _handle(conn: Conn, group: str, sub: Subscription, record: Any) -> None:
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
        async with conn.transaction():
            await sub.handler(event, conn)
    except PermanentError as exc:
        await _dead_letter(conn, group, record, f"{exc.code}: {exc}")
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("record handled", extra={"topic": record.topic, "offset": record.offset})


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
                async with pool.acquire() as conn, conn.transaction():
                    for records in batches.values():
                        for record in records:
                            await _handle(conn, group, by_topic[record.topic], record)
            except (
                RetryableError,
                asyncpg.PostgresConnectionError,
                # SQLSTATE class 57: shutting down (57P01/57P02) or starting up (57P03).
                asyncpg.exceptions.OperatorInterventionError,
                OSError,
                asyncpg.exceptions.InterfaceError,
            ) as exc:
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


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str  # base name (without the topic prefix)
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


class LagProbe:
    """Reads a consumer group's committed offsets and its topics' end offsets on demand."""

    def __init__(
        self,
        admin: AIOKafkaAdminClient,
        consumer: AIOKafkaConsumer,
        settings: KafkaSettings,
        *,
        group: str,
        topics: Sequence[str],
    ) -> None:
        self._admin = admin
        self._consumer = consumer
        self._settings = settings
        self.group = group
        self._names = {settings.topic(t): t for t in topics}

    async def read(self, *, attempts: int = 4, backoff_s: float = 0.2) -> list[PartitionLag]:
        """Retries retriable Kafka errors (a fresh cluster has no group coordinator until asked
        once); raises :class:`~gen_common.errors.InfrastructureError` when Kafka cannot answer."""
        for attempt in range(attempts):
            try:
                return await self._read()
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise InfrastructureError(f"consumer lag unavailable: {exc!r}") from exc
                log.info("consumer lag: retrying", extra={"error": repr(exc)})
            await asyncio.sleep(backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    async def _read(self) -> list[PartitionLag]:
        described = await self._admin.describe_topics(list(self._names))
        partitions = [
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d["error_code"] == 0
            for p in d["partitions"]
        ]
        if not partitions:
            return []
        committed = await self._admin.list_consumer_group_offsets(
            self._settings.topic(self.group), partitions=partitions
        )
        ends = await self._consumer.end_offsets(partitions)
        out = []
        for tp in sorted(partitions):
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            out.append(PartitionLag(self._names[tp.topic], tp.partition, offset, ends[tp]))
        return out


@asynccontextmanager
async def open_lag_probe(
    settings: KafkaSettings, *, group: str, topics: Sequence[str]
) -> AsyncIterator[LagProbe]:
    """A :class:`LagProbe` for ``group`` (base name) on ``topics`` (base names)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=settings.client_id
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        group_id=None,
        enable_auto_commit=False,
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            yield LagProbe(admin, consumer, settings, group=group, topics=topics)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
