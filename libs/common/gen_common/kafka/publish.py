"""Producing: an idempotent ``acks=all`` publisher and topic creation.

Every produced record carries a W3C ``traceparent`` header, a child of the given or bound trace
context (:mod:`gen_common.tracing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gen_common import tracing
from gen_common.events import TOPIC_OF, TOPICS, Event, key_of
from gen_common.settings import KafkaSettings

TRACEPARENT = tracing.TRACEPARENT


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
